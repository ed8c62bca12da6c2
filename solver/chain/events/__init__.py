"""Reading Symmio and MultiAccount logs: a topic0 decoder (pure) and a chunked log source (web3)."""
