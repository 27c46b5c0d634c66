/**
 * Runs the Anthropic Messages API stand-in as its own process (benchmarks use it as the upstream
 * and as the "direct" baseline):
 *
 *   node --import tsx test/harness/anthropic-standin-main.ts --port 0 [--spacing-ms 20]
 *        [--reply fixed-json|fixed-sse|echo] [--api-key KEY]
 *
 * Prints one JSON line `{"url": "http://127.0.0.1:PORT"}` on stdout once listening; exits on
 * SIGTERM/SIGINT. fixed-json / fixed-sse answer every POST /v1/messages with the same message as
 * JSON / SSE whatever the request's `stream` flag (rendered once; no per-request token counting).
 * echo (the default) echoes the last user message, JSON or SSE as the request asks.
 * Requests are not recorded, so memory stays flat under load.
 */
import { startAnthropicStandin, type StandinReply } from './anthropic-standin';

function parseArgs(argv: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const eq = a.indexOf('=');
    if (eq > 0) out.set(a.slice(2, eq), a.slice(eq + 1));
    else {
      const v = argv[i + 1];
      if (v === undefined) throw new Error(`${a} needs a value`);
      out.set(a.slice(2), v);
      i++;
    }
  }
  return out;
}

// ~40 output tokens in 20 deltas: a short but realistic answer.
const FIXED_TEXT =
  'The quick brown fox jumps over the lazy dog. Streaming replies arrive as many small deltas, ' +
  'and a proxy must forward each one as it comes, without buffering the whole response first.';

function fixedReply(stream: boolean): StandinReply {
  return {
    kind: 'message',
    stream,
    model: 'claude-sonnet-4-6',
    content: [{ type: 'text', text: FIXED_TEXT }],
    usage: { input_tokens: 12, output_tokens: 40 },
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const known = new Set(['port', 'spacing-ms', 'reply', 'api-key', 'host']);
  for (const k of args.keys()) if (!known.has(k)) throw new Error(`unknown option --${k}`);
  const port = Number(args.get('port') ?? '0');
  const spacing = Number(args.get('spacing-ms') ?? '0');
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad --port ${args.get('port')}`);
  if (!(spacing >= 0)) throw new Error(`bad --spacing-ms ${args.get('spacing-ms')}`);
  const mode = args.get('reply') ?? 'echo';
  if (mode !== 'fixed-json' && mode !== 'fixed-sse' && mode !== 'echo') {
    throw new Error(`--reply must be fixed-json, fixed-sse or echo, not ${mode}`);
  }

  const standin = await startAnthropicStandin({
    port,
    host: args.get('host'),
    deltaSpacingMs: spacing,
    expectedApiKey: args.get('api-key'),
    record: false,
  });
  if (mode !== 'echo') standin.reply(fixedReply(mode === 'fixed-sse'));
  process.stdout.write(JSON.stringify({ url: standin.url }) + '\n');

  const stop = (): void => {
    standin.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((e: unknown) => {
  process.stderr.write(`anthropic-standin-main: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(2);
});
