import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { run, startProcess, type Proc } from './support/processes';

/**
 * The README's quick start, executed as written: the bundled stand-in as upstream, `npm start`, a
 * development token from `attest dev-token`, and examples/quickstart.mjs streaming through the gateway.
 */

const readme = readFileSync('README.md', 'utf8');
const dataDir = mkdtempSync(join(tmpdir(), 'attest-readme-'));
const procs: Proc[] = [];

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGTERM')));
});

describe('README quick start', () => {
  it('lists the commands this test runs', () => {
    for (const line of [
      'ANTHROPIC_API_KEY=sk-ant-your-key npm start',
      'npm test',
      'export ANTHROPIC_BASE_URL=http://127.0.0.1:8080',
      'export ANTHROPIC_API_KEY=$(npm run -s attest -- dev-token --config examples/attest.yaml --group developers)',
      'node examples/quickstart.mjs',
      'npm run standin',
      'ANTHROPIC_UPSTREAM_URL=http://127.0.0.1:8081 ANTHROPIC_API_KEY=unused npm start',
      'export ATTEST_TOKEN=$(npm run -s attest -- dev-token --config examples/attest.yaml --group auditors)',
      'npm run -s attest -- evidence query pci.10.2.1.1',
      'npm run -s attest -- verify',
    ]) {
      expect(readme).toContain(line);
    }
    expect(readFileSync('.ci/run', 'utf8')).toContain('npm test');
  });

  it('streams a message through the gateway with the card number masked', async () => {
    // Port 0 instead of the fixed ports, so CI never collides with anything already listening.
    const standin = startProcess('npm', ['run', '-s', 'standin', '--', '--port', '0'], { detached: true });
    procs.push(standin);
    const upstreamUrl = JSON.parse((await standin.waitFor(/^\{.*\}$/m))[0]).url as string;

    const gateway = startProcess('npm', ['start'], {
      env: { ANTHROPIC_API_KEY: 'unused', ANTHROPIC_UPSTREAM_URL: upstreamUrl, ATTEST_PORT: '0', ATTEST_CONSOLE_PORT: '0', ATTEST_DATA_DIR: dataDir },
      detached: true,
    });
    procs.push(gateway);
    const gatewayUrl = (await gateway.waitFor(/listening on (http:\/\/\S+)/))[1]!;
    expect(gateway.stdout()).toContain('dev token (DEVELOPMENT issuer is ON)');

    const token = await run('npm', ['run', '-s', 'attest', '--', 'dev-token', '--config', 'examples/attest.yaml', '--group', 'developers'], {
      env: { ATTEST_DATA_DIR: dataDir },
    });
    expect(token.stderr).toBe('');
    expect(token.code).toBe(0);
    expect(token.stdout.trim()).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);

    const quick = await run('node', ['examples/quickstart.mjs'], {
      env: { ANTHROPIC_BASE_URL: gatewayUrl, ANTHROPIC_API_KEY: token.stdout.trim() },
    });
    expect(quick.stderr).toBe('');
    expect(quick.code).toBe(0);
    expect(quick.stdout).toContain('my card is 411111******1111.');
    expect(quick.stdout).not.toMatch(/4111 1111 1111 1111/);
    expect(quick.stdout).toContain('[stop_reason=end_turn');

    // The gateway's own log names the exchange and holds no card number.
    expect(gateway.stdout()).toContain('"msg":"exchange"');
    expect(gateway.stdout()).not.toMatch(/4111 ?1111 ?1111 ?1111/);

    // The auditor's side, as the start banner says: a token, an evidence query, a verification.
    const consoleUrl = (await gateway.waitFor(/export ATTEST_CONSOLE_URL=(\S+)/))[1]!;
    const auditor = await run('npm', ['run', '-s', 'attest', '--', 'dev-token', '--config', 'examples/attest.yaml', '--group', 'auditors'], { env: { ATTEST_DATA_DIR: dataDir } });
    const env = { ATTEST_CONSOLE_URL: consoleUrl, ATTEST_TOKEN: auditor.stdout.trim() };
    // The evidence writer is asynchronous: wait until the exchange is queryable.
    let access = await run('npm', ['run', '-s', 'attest', '--', 'evidence', 'query', 'pci.10.2.1.1', '--format', 'json'], { env });
    for (let i = 0; i < 50 && !access.stdout.includes('req_attest_'); i++) {
      await new Promise((r) => setTimeout(r, 200));
      access = await run('npm', ['run', '-s', 'attest', '--', 'evidence', 'query', 'pci.10.2.1.1', '--format', 'json'], { env });
    }
    expect(access.code).toBe(0);
    expect(access.stdout).toContain('req_attest_');
    expect(access.stdout).not.toContain('4111111111111111');
    const verified = await run('npm', ['run', '-s', 'attest', '--', 'verify'], { env });
    expect(verified.stdout).toContain('Evidence intact');
    expect(verified.code).toBe(0);
    // A dozen CLI processes, each loading TypeScript: minutes on a loaded 2-core CI machine.
  }, 120_000);

  it('checks config files with `attest config check`, listing every problem', async () => {
    const ok = await run('npm', ['run', '-s', 'attest', '--', 'config', 'check', 'examples/attest.yaml']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('OK');
    const bad = join(dataDir, 'bad.yaml');
    writeFileSync(bad, 'upstream: { anthropic: { apiKey: { env: K } } }\nmasking: { format: full }\nsurprise: 1\n');
    const res = await run('npm', ['run', '-s', 'attest', '--', 'config', 'check', bad]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('masking.format (line 2): must be one of: bin6-last4, last4');
    expect(res.stderr).toContain('unknown key(s): surprise');
    expect(res.stderr).toContain('fix:');
  });

  it('refuses a dev token when the development issuer is off', async () => {
    const cfg = join(dataDir, 'nodev.yaml');
    writeFileSync(cfg, `upstream: { anthropic: { apiKey: { env: K } } }\nidentity: { issuers: [{ issuer: "https://idp.example.com", audiences: [a] }] }\ngroups: { g: {} }\n`);
    const res = await run('npm', ['run', '-s', 'attest', '--', 'dev-token', '--config', cfg, '--group', 'g']);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('development issuer is disabled');
  });
});
