// Compile a solc standard-JSON input read from stdin with the npm `solc` package.
// Usage: node solc_driver.js <path to node_modules/solc>   (prints the standard-JSON output)
"use strict";
const solc = require(process.argv[2]);
const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
  const input = Buffer.concat(chunks).toString("utf8");
  const output = solc.compile(input);
  process.stdout.write(JSON.stringify({ version: solc.version(), output: JSON.parse(output) }));
});
