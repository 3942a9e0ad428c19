'use strict';

// pino, configured by the log knobs: `json` (one JSON object per line on stderr, as the Rust API), `pretty`
// (a plain one-line-per-record text rendering, no extra dependency), `off` (silent).

const pino = require('pino');

function prettyDestination(stream) {
  return {
    write(line) {
      let rec;
      try {
        rec = JSON.parse(line);
      } catch {
        stream.write(line);
        return;
      }
      const { time, level, msg, pid, hostname, ...rest } = rec;
      const extras = Object.entries(rest)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      const ts = new Date(time).toISOString();
      stream.write(`${ts} ${String(level).toUpperCase().padStart(5)} ${msg ?? ''}${extras ? ' ' + extras : ''}\n`);
    },
  };
}

function createLogger({ log_format: format, log_level: level }, stream = process.stderr) {
  if (format === 'off') return pino({ level: 'silent' });
  const options = {
    level,
    base: { pid: process.pid },
    formatters: { level: (label) => ({ level: label }) },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (format === 'pretty') {
    options.timestamp = pino.stdTimeFunctions.epochTime;
    return pino(options, prettyDestination(stream));
  }
  return pino(options, stream === process.stderr ? pino.destination(2) : stream);
}

module.exports = { createLogger };
