// Cold start to the first served request: spawns a server, polls each URL (every millisecond, a new
// connection each time) until it answers with the expected status, stops the server (SIGTERM, then waits for
// it to exit), and repeats. The time is from spawn() to the moment the last URL answered as expected.
//
//   node bench/cold-start.mjs --runs N --expect URL=STATUS [--expect URL=STATUS ...] [--fresh DIR] -- COMMAND ARGS...
//
// --fresh DIR empties DIR before the first run only (a first start that has to create its keys and store);
// the later runs start on what the first left. Prints
//   RESULT first_ms=<the first run> median_ms=<median of the later runs, or the first when N = 1> runs=N
// URLs may name `localhost`: connections go to 127.0.0.1 with the Host header kept. The server's standard output
// is discarded and its standard error shown only when it fails to come up.
import { spawn } from 'node:child_process';
import { rmSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values: options, positionals: command } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '5' },
    expect: { type: 'string', multiple: true },
    fresh: { type: 'string' },
    timeout: { type: 'string', default: '30' },
  },
});
if (!options.expect?.length || command.length === 0) {
  console.error('usage: cold-start.mjs --runs N --expect URL=STATUS ... -- COMMAND ARGS...');
  process.exit(2);
}
const expectations = options.expect.map((e) => {
  const at = e.lastIndexOf('=');
  return { url: new URL(e.slice(0, at)), status: Number(e.slice(at + 1)) };
});

function status(url) {
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: url.hostname === 'localhost' ? '127.0.0.1' : url.hostname,
        port: url.port || 80,
        path: url.pathname + url.search,
        headers: { host: url.host },
        agent: false,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      },
    );
    req.on('error', () => resolve(0));
    req.end();
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function once() {
  const began = process.hrtime.bigint();
  const child = spawn(command[0], command.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr = (stderr + chunk).slice(-4000)));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  let dead = false;
  exited.then(() => (dead = true));
  const deadline = Date.now() + Number(options.timeout) * 1000;
  try {
    for (const { url, status: wanted } of expectations) {
      let last = 0;
      while ((last = await status(url)) !== wanted) {
        if (dead) throw new Error(`${command[0]} exited before ${url} answered ${wanted}`);
        if (Date.now() > deadline) throw new Error(`${url} answered ${last}, not ${wanted}, within ${options.timeout} s`);
        await sleep(1);
      }
    }
    return Number(process.hrtime.bigint() - began) / 1e6;
  } catch (error) {
    console.error(`${error.message}; its standard error ends with:\n${stderr}`);
    throw error;
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

const runs = Number(options.runs);
if (options.fresh) {
  rmSync(options.fresh, { recursive: true, force: true });
  mkdirSync(options.fresh, { recursive: true });
}
const times = [];
for (let i = 0; i < runs; i += 1) times.push(await once());
const later = times.slice(1).sort((a, b) => a - b);
const median = later.length ? later[Math.floor((later.length - 1) / 2)] : times[0];
console.log(`RESULT first_ms=${times[0].toFixed(1)} median_ms=${median.toFixed(1)} runs=${runs} all_ms=${times.map((t) => t.toFixed(1)).join(',')}`);
