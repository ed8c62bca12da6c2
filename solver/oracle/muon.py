"""OracleClient over the Muon HTTP API (http-api.md §8): production Muon nodes or `solver oracle`.

URLs are tried in order. A transport error, a timeout, a 5xx, a 4xx other than 400/422 (wrong
path, rate limit) or a malformed answer moves on to the next URL; when all fail the caller gets
ORACLE_UNAVAILABLE. A well-formed `success: false` with 2xx/400/422 is the oracle's decision
(e.g. a stale price), raised at once as ORACLE_REFUSED: another node would see the same inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeVar

import httpx
from eth_utils.address import is_address, to_checksum_address

from solver.core.errors import ConfigError, ErrorCode
from solver.oracle import envelope
from solver.oracle.client import OracleError
from solver.oracle.signer import PairUpnlAndPriceSig, SingleUpnlAndPriceSig, SingleUpnlSig
from solver.settings import Settings

log = logging.getLogger("solver.oracle.muon")
_REFUSAL_STATUSES = frozenset({400, 422})  # with success:false: the oracle judged the request
S = TypeVar("S", SingleUpnlSig, SingleUpnlAndPriceSig, PairUpnlAndPriceSig)


class MuonClient:
    def __init__(
        self,
        urls: Sequence[str],
        app_name: str,
        chain_id: int,
        symmio: str,
        *,
        timeout_s: float = 5.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if not urls:
            raise ConfigError("at least one oracle URL is required (oracle.muon_urls)")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"oracle URL must be http(s): {url!r}")
        if not is_address(symmio.lower()):
            raise ConfigError(f"not an address: {symmio!r}")
        self._urls = [u.rstrip("/") for u in urls]
        self._app = app_name
        self._chain_id = chain_id
        self._symmio = str(to_checksum_address(symmio.lower()))
        self._timeout = httpx.Timeout(timeout_s)
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=self._timeout)

    @classmethod
    def from_settings(cls, settings: Settings, *, http: httpx.AsyncClient | None = None) -> MuonClient:
        return cls(
            settings.oracle.muon_urls,
            settings.oracle.app_name,
            settings.chain.chain_id,
            settings.chain.symmio_address,
            http=http,
        )

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def party_a_upnl_and_price(self, *, party_a: str, symbol_id: int) -> SingleUpnlAndPriceSig:
        params = {"partyA": party_a, **self._where(), "symbolId": str(symbol_id)}
        return await self._fetch(envelope.PARTY_A_WITH_PRICE, params, SingleUpnlAndPriceSig)

    async def party_a_upnl(self, *, party_a: str) -> SingleUpnlSig:
        return await self._fetch(envelope.PARTY_A, {"partyA": party_a, **self._where()}, SingleUpnlSig)

    async def party_b_upnl(self, *, party_b: str, party_a: str) -> SingleUpnlSig:
        params = {"partyB": party_b, "partyA": party_a, **self._where()}
        return await self._fetch(envelope.PARTY_B, params, SingleUpnlSig)

    async def pair_upnl_and_price(self, *, party_b: str, party_a: str, symbol_id: int) -> PairUpnlAndPriceSig:
        params = {"partyA": party_a, "partyB": party_b, **self._where(), "symbolId": str(symbol_id)}
        return await self._fetch(envelope.PAIR_WITH_PRICE, params, PairUpnlAndPriceSig)

    def _where(self) -> dict[str, str]:
        return {"chainId": str(self._chain_id), "symmio": self._symmio}

    async def _fetch(self, method: str, params: dict[str, str], kind: type[S]) -> S:
        query = {"app": self._app, "method": method, **{f"params[{k}]": v for k, v in params.items()}}
        failures: list[str] = []
        for url in self._urls:
            try:
                resp = await self._http.get(f"{url}/v1/", params=query, timeout=self._timeout)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                failures.append(f"{url}: {type(exc).__name__} {exc}".strip())
                continue
            try:
                body: object = resp.json()
            except ValueError:
                body = None
            if not (resp.is_success or resp.status_code in _REFUSAL_STATUSES):
                # 5xx, and 4xx that say nothing about the request itself (wrong path, rate limit).
                failures.append(f"{url}: HTTP {resp.status_code} {_reason(body)}".strip())
                continue
            try:
                sig = envelope.decode(body, method)
            except envelope.Refusal as refusal:
                log.info("oracle %s refused %s: %s", url, method, refusal.message)
                raise OracleError(
                    ErrorCode.ORACLE_REFUSED, f"The price oracle refused to sign this request: {refusal.message}"
                ) from None
            except envelope.MalformedEnvelope as exc:
                failures.append(f"{url}: HTTP {resp.status_code} malformed answer: {exc}")
                continue
            if not isinstance(sig, kind):  # decode() picks the struct from the method; belt and braces
                failures.append(f"{url}: unexpected answer shape for {method}")
                continue
            return sig
        log.warning("oracle %s failed on every URL: %s", method, "; ".join(failures))
        raise OracleError(ErrorCode.ORACLE_UNAVAILABLE)


def _reason(body: object) -> str:
    """The error message of a 5xx envelope, for the log."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
        if isinstance(message, str):
            return message[:200]
    return ""
