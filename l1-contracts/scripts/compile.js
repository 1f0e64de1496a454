// Standard-JSON driver for solcjs; called by scripts/compile. Usage: node scripts/compile.js OUT_DIR
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const SOLC_VERSION = '0.8.37';
const EVM_VERSION = 'cancun';
const OPTIMIZER = { enabled: true, runs: 200 };

const root = path.resolve(__dirname, '..');
const contractsDir = path.join(root, 'contracts');
const out = process.argv[2];
if (!out) {
  console.error('usage: node scripts/compile.js OUT_DIR');
  process.exit(2);
}
if (!solc.version().startsWith(SOLC_VERSION + '+')) {
  console.error(`compile: solc ${solc.version()} is not the pinned ${SOLC_VERSION}; run npm ci in l1-contracts/`);
  process.exit(1);
}

// Every .sol file under contracts/, keyed by its path relative to contracts/ (the source unit name), sorted.
function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]))
    .filter((f) => f.endsWith('.sol'));
}
const files = walk(contractsDir).map((f) => path.relative(contractsDir, f).split(path.sep).join('/')).sort();
const sources = {};
for (const f of files) sources[f] = { content: fs.readFileSync(path.join(contractsDir, f), 'utf8') };

const settings = {
  optimizer: OPTIMIZER,
  evmVersion: EVM_VERSION,
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
};
const res = JSON.parse(solc.compile(JSON.stringify({ language: 'Solidity', sources, settings })));
// Errors and warnings both fail the build; only informational messages pass.
const problems = (res.errors || []).filter((e) => e.severity !== 'info');
for (const e of res.errors || []) console.error(e.formattedMessage || e.message);
if (problems.length) process.exit(1);

fs.mkdirSync(out, { recursive: true });
let written = 0;
for (const source of Object.keys(res.contracts).sort()) {
  for (const name of Object.keys(res.contracts[source]).sort()) {
    const c = res.contracts[source][name];
    // Artifacts for deployable contracts only (interfaces and internal-only libraries are compiled into them).
    if (path.posix.basename(source, '.sol') !== name || !c.evm.bytecode.object || c.abi.length === 0) continue;
    const artifact = {
      contractName: name,
      sourceName: source,
      compiler: `solc-js ${solc.version()}`,
      settings: { optimizer: OPTIMIZER, evmVersion: EVM_VERSION },
      abi: c.abi,
      bytecode: '0x' + c.evm.bytecode.object,
      deployedBytecode: '0x' + c.evm.deployedBytecode.object,
    };
    fs.writeFileSync(path.join(out, `${name}.json`), JSON.stringify(artifact, null, 2) + '\n');
    written++;
  }
}
if (written === 0) {
  console.error('compile: no deployable contract found');
  process.exit(1);
}
