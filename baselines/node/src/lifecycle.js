'use strict';

// What the single process and the cluster primary share about being a process apibench starts
// and stops: the start-up failure (one `error:` line, exit 1), the one `listening on` line it
// waits for, and the requests to stop (SIGTERM, SIGINT, and the end of stdin when
// API_EXIT_ON_STDIN_EOF=true). Cluster workers use only fail(): their primary announces and
// stops them.

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}

function urlHost(host) {
  return host.includes(':') ? `[${host}]` : host;
}

// `address`: a server.address() of the listening socket.
function announceListening({ address, port }) {
  process.stderr.write(`listening on http://${urlHost(address)}:${port}\n`);
}

// Calls `stop(reason)` on SIGTERM, SIGINT and — when API_EXIT_ON_STDIN_EOF=true and
// `stdinLifeline` — the end of stdin: a harness that cannot promise to signal us (a test process
// whose statics never drop) keeps our stdin open as a lifeline; when it dies, the pipe closes
// and we stop like on SIGTERM.
function onStopRequest(stop, { stdinLifeline = true } = {}) {
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (stdinLifeline && process.env.API_EXIT_ON_STDIN_EOF === 'true') {
    process.stdin.on('end', () => stop('stdin closed'));
    process.stdin.on('error', () => stop('stdin closed'));
    process.stdin.resume();
  }
}

module.exports = { fail, announceListening, onStopRequest };
