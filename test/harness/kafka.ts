/**
 * A real Apache Kafka broker for tests and benchmarks.
 *
 * - `KAFKA_BROKERS=host:port[,host:port…]` set: that cluster is used as is; close() does nothing.
 * - Otherwise a single-node KRaft broker (process.roles=broker,controller) is started from Apache
 *   Kafka's own jars, fetched from Maven Central with `mvn dependency:copy-dependencies` into a cache
 *   (`$ATTEST_KAFKA_CACHE`, else `$XDG_CACHE_HOME/attest/kafka/<version>`, else
 *   `~/.cache/attest/kafka/<version>`). The fetch runs once per version and machine; a cached fetch
 *   costs one stat. The broker listens on free 127.0.0.1 ports, keeps its data in a temp dir that
 *   close() removes, and runs with a small heap.
 *
 * Needs `java` (17+ for Kafka 4.x; `$JAVA_HOME/bin/java` if JAVA_HOME is set) and `mvn` on PATH.
 * `KAFKA_VERSION` overrides the default version. Progress goes to stderr.
 *
 * Test files call `kafkaForTests()`: under vitest with test/harness/kafka-global-setup.ts, every file
 * of a run shares one broker, started by the first file that asks.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, connect, type AddressInfo } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';

export const DEFAULT_KAFKA_VERSION = '4.4.0';
/** Pinned so a fresh machine resolves the same plugin as a warm one. */
const DEPENDENCY_PLUGIN = 'org.apache.maven.plugins:maven-dependency-plugin:3.8.1';
const MARKER = '.attest-complete';

export interface KafkaBroker {
  brokers: string[];
  close(): Promise<void>;
  /** A broker this process started (`dedicated`): stop the JVM, keeping its data and ports. */
  stop?(): Promise<void>;
  /** Start it again after stop(), on the same ports and data. */
  start?(): Promise<void>;
}

export interface StartKafkaOptions {
  /** Default `KAFKA_VERSION` or DEFAULT_KAFKA_VERSION. */
  version?: string;
  /** JVM heap limit. Default 512m. */
  heap?: string;
  /** Time allowed for the broker to answer metadata after start. Default 90 s. */
  startTimeoutMs?: number;
  /** Start a broker of our own even when KAFKA_BROKERS is set (outage tests stop and start it). */
  dedicated?: boolean;
}

function log(msg: string): void {
  process.stderr.write(`[kafka-harness] ${msg}\n`);
}

function secs(t0: number): string {
  return `${((performance.now() - t0) / 1000).toFixed(1)} s`;
}

export function kafkaCacheDir(version: string): string {
  if (process.env.ATTEST_KAFKA_CACHE) return join(process.env.ATTEST_KAFKA_CACHE, version);
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'attest', 'kafka', version);
}

function javaBin(): string {
  return process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
}

/** Runs a command to completion; rejects with its output when it fails. */
function exec(cmd: string, args: string[], opts: { cwd?: string; timeoutMs: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += String(d)));
    child.stderr.on('data', (d) => (out += String(d)));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${out.slice(-8000)}`));
    });
  });
}

function pom(version: string): string {
  // kafka_2.13 (the broker: kafka.Kafka, kafka.tools.StorageTool) brings kafka-server, -metadata,
  // -raft, -storage, the coordinators, kafka-clients, scala and log4j-core at runtime scope.
  // Kafka logs through slf4j 1.7, so log4j-slf4j-impl binds it to log4j2; without it slf4j
  // warns and drops every log line.
  const log4jVersion = '2.25.5';
  return `<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>attest.test</groupId>
  <artifactId>kafka-broker-classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>${version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>${log4jVersion}</version>
    </dependency>
  </dependencies>
</project>
`;
}

/**
 * Makes sure `<cache>/lib` holds the broker's runtime classpath; returns that directory. Idempotent
 * and safe against concurrent callers: jars are copied into a private staging directory, which is
 * renamed into place only when complete (the marker lists the jars).
 */
export async function fetchKafka(version: string = process.env.KAFKA_VERSION || DEFAULT_KAFKA_VERSION): Promise<string> {
  const dir = kafkaCacheDir(version);
  const lib = join(dir, 'lib');
  if (await isComplete(lib)) return lib;

  const t0 = performance.now();
  log(`fetching Apache Kafka ${version} jars from Maven Central into ${lib} (once per machine)…`);
  await mkdir(dir, { recursive: true });
  const staging = await mkdtemp(join(dir, 'staging-'));
  try {
    await writeFile(join(staging, 'pom.xml'), pom(version));
    const out = join(staging, 'lib');
    await exec(
      'mvn',
      ['-B', '-ntp', '-f', join(staging, 'pom.xml'), `${DEPENDENCY_PLUGIN}:copy-dependencies`, `-DoutputDirectory=${out}`, '-DincludeScope=runtime'],
      { timeoutMs: 600_000 },
    );
    const jars = (await readdir(out)).filter((f) => f.endsWith('.jar')).sort();
    if (!jars.some((j) => j.startsWith(`kafka_2.13-${version}`))) throw new Error(`mvn copied no kafka_2.13-${version} jar into ${out}`);
    await writeFile(join(out, MARKER), jars.join('\n') + '\n');
    try {
      await rename(out, lib);
    } catch (err) {
      // Another process finished first: its copy is as good as ours.
      if (!(await isComplete(lib))) throw err;
    }
    log(`fetched ${jars.length} jars in ${secs(t0)}`);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  if (!(await isComplete(lib))) throw new Error(`Kafka classpath in ${lib} is incomplete; delete ${dir} and retry`);
  return lib;
}

async function isComplete(lib: string): Promise<boolean> {
  try {
    const listed = (await readFile(join(lib, MARKER), 'utf8')).split('\n').filter(Boolean);
    return listed.length > 0 && listed.every((j) => existsSync(join(lib, j)));
  } catch {
    return false;
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** A Kafka cluster id: 16 random bytes, base64url without padding, not starting with '-'. */
function clusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

/** KRaft with dynamic quorum (`controller.quorum.bootstrap.servers`, `format --standalone`): 3.9+. */
function dynamicQuorum(version: string): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 3 || (major === 3 && minor >= 9);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function tail(file: string, chars = 6000): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).slice(-chars);
  } catch {
    return '(no log)';
  }
}

export async function startKafka(opts: StartKafkaOptions = {}): Promise<KafkaBroker> {
  const given = process.env.KAFKA_BROKERS?.trim();
  if (given && !opts.dedicated) {
    return { brokers: given.split(',').map((b) => b.trim()).filter(Boolean), close: async () => {} };
  }
  // The free ports are picked before the JVM binds them, and other tests run alongside: another
  // process can take a port in between. That start fails fast with a bind error; try new ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startKafkaOnce(opts);
    } catch (err) {
      const portTaken = /Unable to start acceptor|Address already in use|BindException/.test((err as Error).message);
      if (!portTaken || attempt >= 3) throw err;
      log(`a broker port was taken meanwhile; retrying with new ports (attempt ${attempt + 1})`);
    }
  }
}

async function startKafkaOnce(opts: StartKafkaOptions): Promise<KafkaBroker> {
  const version = opts.version ?? (process.env.KAFKA_VERSION || DEFAULT_KAFKA_VERSION);
  const lib = await fetchKafka(version);
  const classpath = join(lib, '*');
  const java = javaBin();

  const t0 = performance.now();
  const work = await mkdtemp(join(tmpdir(), 'attest-kafka-'));
  const [port, controllerPort] = [await freePort(), await freePort()];
  const dataDir = join(work, 'data');
  const logFile = join(work, 'server.log');
  const props = [
    'process.roles=broker,controller',
    'node.id=1',
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    dynamicQuorum(version)
      ? `controller.quorum.bootstrap.servers=127.0.0.1:${controllerPort}`
      : `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
    `log.dirs=${dataDir}`,
    'num.partitions=1',
    'offsets.topic.replication.factor=1',
    'offsets.topic.num.partitions=1',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'transaction.state.log.num.partitions=1',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    'min.insync.replicas=1',
    'group.initial.rebalance.delay.ms=0',
    'auto.create.topics.enable=true',
    '',
  ].join('\n');
  const propsFile = join(work, 'server.properties');
  await writeFile(propsFile, props);
  // Broker log to a file in the work dir (its tail goes into any start error); only errors on the console.
  const log4j = [
    'rootLogger.level=INFO',
    'rootLogger.appenderRef.file.ref=FILE',
    'appender.file.type=File',
    'appender.file.name=FILE',
    `appender.file.fileName=${logFile}`,
    'appender.file.layout.type=PatternLayout',
    'appender.file.layout.pattern=[%d] %p %m (%c)%n',
    'logger.kafka.name=kafka',
    'logger.kafka.level=INFO',
    'logger.state.name=state.change.logger',
    'logger.state.level=WARN',
    '',
  ].join('\n');
  const log4jFile = join(work, 'log4j2.properties');
  await writeFile(log4jFile, log4j);
  const jvm = [`-Dlog4j2.configurationFile=${log4jFile}`, '-Djava.awt.headless=true', '-XX:+UseG1GC'];

  const cleanup = () => rm(work, { recursive: true, force: true });
  try {
    const cid = clusterId();
    const formatArgs = ['-Xmx256m', ...jvm, '-cp', classpath, 'kafka.tools.StorageTool', 'format', '-t', cid, '-c', propsFile];
    if (dynamicQuorum(version)) formatArgs.push('--standalone');
    await exec(java, formatArgs, { timeoutMs: 120_000 });
  } catch (err) {
    await cleanup();
    throw err;
  }

  const brokers = [`127.0.0.1:${port}`];
  const launch = () =>
    launchBroker({ java, args: [`-Xmx${opts.heap ?? '512m'}`, ...jvm, '-cp', classpath, 'kafka.Kafka', propsFile], work, port, brokers, logFile, startTimeoutMs: opts.startTimeoutMs });
  let running: Running;
  try {
    running = await launch();
  } catch (err) {
    await cleanup();
    throw err;
  }
  log(`Kafka ${version} (KRaft, single node) up on ${brokers[0]} in ${secs(t0)}`);

  let closing: Promise<void> | undefined;
  return {
    brokers,
    close: () =>
      (closing ??= (async () => {
        await running.stop();
        await cleanup();
      })()),
    // The same data directory and ports: what was acknowledged before the stop is there after the start.
    stop: () => running.stop(),
    start: async () => {
      if (closing) throw new Error('broker is closed');
      await running.stop();
      running = await launch();
    },
  };
}

interface Running {
  /** SIGTERM (SIGKILL after 15 s); idempotent. */
  stop(): Promise<void>;
}

/** Spawns the broker JVM and waits until it answers; on failure it is stopped and the error carries its logs. */
async function launchBroker(o: {
  java: string;
  args: string[];
  work: string;
  port: number;
  brokers: string[];
  logFile: string;
  startTimeoutMs: number | undefined;
}): Promise<Running> {
  const { port, brokers } = o;
  const child: ChildProcess = spawn(o.java, o.args, {
    cwd: o.work,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let console_ = '';
  child.stdout!.on('data', (d) => (console_ = (console_ + String(d)).slice(-8000)));
  child.stderr!.on('data', (d) => (console_ = (console_ + String(d)).slice(-8000)));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  let dead = false;
  let spawnError: Error | undefined;
  child.once('error', (err) => (spawnError = err));
  void exited.then(() => (dead = true));
  // Never leave a JVM behind if the test process exits without close().
  const killOnExit = () => {
    if (!dead) child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);

  const stop = async (): Promise<void> => {
    if (!dead) {
      child.kill('SIGTERM');
      // A cleared timer, not a bare sleep: a pending 15 s timer would hold the process open after the stop.
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), 15_000)));
      const how = await Promise.race([exited.then(() => 'exited' as const), timeout]);
      clearTimeout(timer);
      if (how === 'timeout') {
        log('broker did not stop within 15 s of SIGTERM; SIGKILL');
        child.kill('SIGKILL');
        await exited;
      }
    }
    process.removeListener('exit', killOnExit);
  };

  const deadline = Date.now() + (o.startTimeoutMs ?? 90_000);
  try {
    while (!(await canConnect(port))) {
      if (dead || spawnError) throw new Error(`broker exited during start${spawnError ? `: ${spawnError.message}` : ''}`);
      if (Date.now() > deadline) throw new Error('broker port did not open in time');
      await sleep(100);
    }
    // The port opens before the broker has caught up with the metadata log; wait for an answer.
    // Then warm up what a fresh broker creates on first use (the group coordinator with
    // __consumer_offsets, a producer-id block for idempotent producers), so that the first test
    // neither waits for it nor sees clients log COORDINATOR_LOAD_IN_PROGRESS while they retry.
    const client = new Kafka({ clientId: 'attest-harness', brokers, logLevel: logLevel.NOTHING, retry: { retries: 0 } });
    const admin = client.admin();
    const producer = client.producer({ idempotent: true, maxInFlightRequests: 1, retry: { retries: 2, initialRetryTime: 100 } });
    const steps: [string, () => Promise<unknown>][] = [
      ['metadata', async () => (await admin.connect(), await admin.listTopics())],
      ['group coordinator', () => admin.describeGroups(['attest-harness-warmup'])],
      ['producer id', () => producer.connect()],
    ];
    try {
      for (const [what, step] of steps) {
        for (;;) {
          try {
            await step();
            break;
          } catch (err) {
            if (dead) throw new Error('broker exited during start');
            if (Date.now() > deadline) throw new Error(`broker did not answer (${what}) in time: ${(err as Error).message}`);
            await sleep(200);
          }
        }
      }
    } finally {
      await producer.disconnect().catch(() => {});
      await admin.disconnect().catch(() => {});
    }
  } catch (err) {
    const msg = `${(err as Error).message}\n--- console ---\n${console_}\n--- server.log (tail) ---\n${await tail(o.logFile)}`;
    await stop();
    throw new Error(msg);
  }
  return { stop };
}

/**
 * The broker for a test file: KAFKA_BROKERS if set, else the run's shared broker from
 * kafka-global-setup.ts (started on first use), else (a config without that setup) a broker of the
 * file's own. close() stops only a broker the file started itself.
 */
export async function kafkaForTests(): Promise<KafkaBroker> {
  const given = process.env.KAFKA_BROKERS?.trim();
  if (given) return startKafka();
  // Imported lazily: this module also serves benchmarks, which run outside vitest.
  const { inject } = await import('vitest');
  const service = inject('attestKafkaService');
  if (!service) return startKafka();
  const res = await fetch(service, { signal: AbortSignal.timeout(600_000) });
  const body = await res.text();
  if (!res.ok) throw new Error(`the shared Kafka broker did not start:\n${body}`);
  const { brokers } = JSON.parse(body) as { brokers: string[] };
  return { brokers, close: async () => {} };
}
