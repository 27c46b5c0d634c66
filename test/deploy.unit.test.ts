/**
 * deploy/ is checked statically: no Docker engine or Kubernetes cluster runs here, so every compose
 * file, Kubernetes manifest, Grafana provisioning file and config file is parsed and cross-checked
 * (services, ports, probes, secrets, volumes, topics) against each other, against the config schema
 * and against the Kafka topic settings in the code. What this cannot prove: that the images start,
 * that the containers reach each other, that ClickHouse accepts users.d/attest.xml. deploy/README.md
 * says how to check those by hand.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../services/common/src/config';
import { kafkaTopicSpecs, type TopicSpec } from '../services/common/src/log/kafka-topics';

// Parsed YAML is untyped by nature; the assertions below are the type checks.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type J = any;

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DEPLOY = join(ROOT, 'deploy');
const COMPOSE_DIR = join(DEPLOY, 'compose');
const K8S_DIR = join(DEPLOY, 'k8s');

const ROLES = ['gateway', 'processors', 'console'] as const;
type Role = (typeof ROLES)[number];
/**
 * `attest processors` serves /healthz and /metrics on this port. There is no config key for it yet;
 * if one is added (`processors.port`), the test reads it from the config instead.
 */
const DEFAULT_PROCESSORS_PORT = 8091;

function read(file: string): string {
  return readFileSync(file, 'utf8');
}

/** Every document of a YAML file, merge keys (`<<: *anchor`) resolved; fails on any YAML error. */
function yamlDocs(file: string): J[] {
  const docs = parseAllDocuments(read(file), { merge: true, uniqueKeys: true });
  if (!Array.isArray(docs)) throw new Error(`${file}: not a YAML stream`);
  for (const d of docs) {
    const problems = [...d.errors, ...d.warnings].map((e) => e.message);
    expect(problems, `${relative(ROOT, file)} parses without errors`).toEqual([]);
  }
  return docs.map((d) => d.toJS({ maxAliasCount: 100 })).filter((d) => d !== null && d !== undefined);
}

function yamlDoc(file: string): J {
  const docs = yamlDocs(file);
  expect(docs, `${relative(ROOT, file)} holds one document`).toHaveLength(1);
  return docs[0];
}

/** Files that deploy/compose/.gitignore keeps out of the repository: local secrets, never read here. */
function isLocalSecret(file: string): boolean {
  const rel = relative(COMPOSE_DIR, file);
  if (rel.startsWith('..')) return false;
  return rel === '.env' || (rel.startsWith(`secrets/`) && rel !== 'secrets/README.md');
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (!isLocalSecret(p)) out.push(p);
  }
  return out.sort();
}

const isYaml = (f: string) => /\.ya?ml$/.test(f);

/** `http://host:port/path` inside a healthcheck or URL → port (number) and path. */
function urlPort(text: string): { port: number; path: string } | undefined {
  const m = /https?:\/\/[^/:'"\s]+:(\d+)(\/[^'"\s)]*)?/.exec(text);
  return m ? { port: Number(m[1]), path: m[2] ?? '/' } : undefined;
}

function healthText(svc: J): string {
  const t = svc.healthcheck?.test;
  return Array.isArray(t) ? t.join(' ') : String(t ?? '');
}

/** Container port of a compose `ports` entry: "127.0.0.1:8080:8080" → 8080; long syntax too. */
function containerPort(entry: J): number {
  if (typeof entry === 'object') return Number(entry.target);
  const parts = String(entry).split('/')[0]!.split(':');
  return Number(parts[parts.length - 1]);
}

// ---------------------------------------------------------------------------------------------

describe('deploy/Dockerfile', () => {
  const text = read(join(DEPLOY, 'Dockerfile'));
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const args = new Map<string, string>();
  for (const l of lines) {
    const m = /^ARG\s+(\w+)=(\S+)/.exec(l);
    if (m) args.set(m[1]!, m[2]!);
  }
  const expand = (s: string) => s.replace(/\$\{(\w+)\}|\$(\w+)/g, (_m, a: string, b: string) => args.get(a ?? b) ?? '');

  it('builds on node:20-bookworm-slim and installs production dependencies with npm ci from the lockfile', () => {
    const froms = lines.filter((l) => /^FROM\s/i.test(l)).map((l) => expand(l.split(/\s+/)[1]!));
    expect(froms.length).toBeGreaterThan(0);
    for (const f of froms) expect(f).toBe('node:20-bookworm-slim');
    const runs = lines.filter((l) => /^RUN\s/i.test(l)).join('\n');
    expect(runs).toMatch(/npm ci\b[^\n]*--omit=dev/);
    expect(runs).not.toMatch(/npm install\b/);
    expect(text).toMatch(/COPY\s+package\.json\s+package-lock\.json/);
  });

  it('runs as a numeric non-root user, under tini, with `node bin/attest.mjs` as the entry', () => {
    const users = lines.filter((l) => /^USER\s/i.test(l)).map((l) => l.split(/\s+/)[1]!);
    expect(users.length, 'a USER instruction').toBeGreaterThan(0);
    const last = users[users.length - 1]!;
    const [uid] = last.split(':');
    expect(uid).toMatch(/^\d+$/); // numeric, so Kubernetes runAsNonRoot can verify it
    expect(Number(uid)).not.toBe(0);
    const entry = lines.find((l) => /^ENTRYPOINT\s/i.test(l));
    expect(entry).toBeDefined();
    const argv = JSON.parse(entry!.replace(/^ENTRYPOINT\s+/i, '')) as string[];
    expect(argv[0]).toMatch(/tini$/);
    expect(argv.slice(-2)).toEqual(['node', 'bin/attest.mjs']);
  });

  it('has a HEALTHCHECK on /healthz, and copies only paths that exist', () => {
    const hc = lines.find((l) => /^HEALTHCHECK\s/i.test(l));
    expect(hc).toMatch(/\/healthz/);
    for (const l of lines.filter((x) => /^COPY\s/i.test(x) && !/--from=/.test(x))) {
      const parts = l.split(/\s+/).slice(1).filter((p) => !p.startsWith('--'));
      for (const src of parts.slice(0, -1)) expect(existsSync(join(ROOT, src)), `COPY source ${src}`).toBe(true);
    }
    const ignore = read(join(DEPLOY, 'Dockerfile.dockerignore'));
    for (const kept of ['node_modules', '.env', 'secrets', '*.test.ts']) expect(ignore).toContain(kept);
  });
});

// ---------------------------------------------------------------------------------------------

describe('deploy/compose', () => {
  const compose = yamlDoc(join(COMPOSE_DIR, 'compose.yaml'));
  const services: Record<string, J> = compose.services;
  const cfgFile = join(COMPOSE_DIR, 'attest.yaml');
  const cfg = yamlDoc(cfgFile);
  const oneShot = (name: string) => services[name]?.restart === 'no';

  it('every service has an image or a build', () => {
    expect(Object.keys(services).sort()).toEqual(
      expect.arrayContaining(['kafka', 'clickhouse', 'grafana', 'gateway', 'processors', 'console']),
    );
    for (const [name, svc] of Object.entries(services)) {
      expect(Boolean(svc.image) || Boolean(svc.build), `${name}: image or build`).toBe(true);
      if (svc.build) expect(existsSync(join(COMPOSE_DIR, svc.build.context, svc.build.dockerfile)), `${name}: build`).toBe(true);
      if (svc.image && !svc.build) expect(String(svc.image), `${name}: pinned image tag`).toMatch(/:[\w.-]+$/);
    }
  });

  it('every long-running service has a healthcheck, and those serving a port probe it', () => {
    for (const [name, svc] of Object.entries(services)) {
      if (oneShot(name)) continue;
      expect(svc.healthcheck?.test, `${name}: healthcheck`).toBeDefined();
      const served = [...(svc.ports ?? []).map(containerPort), ...(svc.expose ?? []).map(Number)];
      if (served.length > 0) {
        const probe = urlPort(healthText(svc));
        expect(probe, `${name}: healthcheck asks an HTTP endpoint`).toBeDefined();
        expect(served, `${name}: healthcheck port is one the service serves`).toContain(probe!.port);
      }
    }
  });

  it('depends_on names existing services, with conditions that can be met', () => {
    for (const [name, svc] of Object.entries(services)) {
      const deps: Record<string, J> = Array.isArray(svc.depends_on)
        ? Object.fromEntries(svc.depends_on.map((d: string) => [d, {}]))
        : (svc.depends_on ?? {});
      for (const [dep, spec] of Object.entries(deps)) {
        expect(services[dep], `${name} depends on ${dep}`).toBeDefined();
        if (spec.condition === 'service_healthy') expect(services[dep].healthcheck, `${dep} has a healthcheck`).toBeDefined();
        if (spec.condition === 'service_completed_successfully') expect(oneShot(dep), `${dep} is a one-shot`).toBe(true);
      }
    }
  });

  it('named volumes, secrets and configs are declared; bind mounts and secret files are where they should be', () => {
    const gitignore = read(join(COMPOSE_DIR, '.gitignore'));
    for (const [name, svc] of Object.entries(services)) {
      for (const v of svc.volumes ?? []) {
        const source = typeof v === 'string' ? v.split(':')[0]! : String(v.source);
        if (source.startsWith('.') || source.startsWith('/')) {
          expect(existsSync(join(COMPOSE_DIR, source)), `${name}: bind mount ${source}`).toBe(true);
        } else {
          expect(compose.volumes, `${name}: volume ${source} declared`).toHaveProperty([source]);
        }
      }
      for (const s of svc.secrets ?? []) {
        const sname = typeof s === 'string' ? s : s.source;
        expect(compose.secrets, `${name}: secret ${sname} declared`).toHaveProperty([sname]);
      }
      for (const c of svc.configs ?? []) {
        const cname = typeof c === 'string' ? c : c.source;
        expect(compose.configs, `${name}: config ${cname} declared`).toHaveProperty([cname]);
        expect(existsSync(join(COMPOSE_DIR, compose.configs[cname].file))).toBe(true);
      }
    }
    // Secret files are local and git-ignored, never committed.
    for (const [sname, s] of Object.entries<J>(compose.secrets ?? {})) {
      expect(s.file, `secret ${sname} comes from a file`).toMatch(/^\.\/secrets\//);
    }
    expect(gitignore).toMatch(/^secrets\/\*$/m);
    expect(gitignore).toMatch(/^\.env$/m);
    expect(existsSync(join(COMPOSE_DIR, '.env.example'))).toBe(true);
  });

  it('runs each Attest role from one image with the shared config file', () => {
    const images = new Set<string>();
    for (const role of ROLES) {
      const svc = services[role];
      expect(svc, role).toBeDefined();
      images.add(String(svc.image));
      const target = (svc.configs ?? []).find((c: J) => c.source === 'attest_config')?.target;
      expect(target, `${role}: attest.yaml mounted`).toBeDefined();
      expect(svc.command).toEqual([role, '--config', target]);
      expect(svc.read_only, `${role}: read-only root filesystem`).toBe(true);
      expect(svc.cap_drop).toContain('ALL');
    }
    expect(images.size).toBe(1);
    expect(compose.configs.attest_config.file).toBe('./attest.yaml');
  });

  it('attest.yaml names the services and ports compose runs', () => {
    // Gateway: server.port is the port compose publishes and probes (/readyz).
    const gw = services.gateway;
    expect(cfg.server.host).toBe('0.0.0.0');
    expect(gw.ports.map(containerPort)).toEqual([cfg.server.port]);
    expect(urlPort(healthText(gw))).toEqual({ port: cfg.server.port, path: '/readyz' });
    // Console.
    const con = services.console;
    expect(cfg.console.host).toBe('0.0.0.0');
    expect(con.ports.map(containerPort)).toEqual([cfg.console.port]);
    expect(urlPort(healthText(con))).toEqual({ port: cfg.console.port, path: '/healthz' });
    // Processors: health and metrics only, inside the network.
    const procPort = cfg.processors?.port ?? DEFAULT_PROCESSORS_PORT;
    expect(services.processors.ports).toBeUndefined();
    expect(services.processors.expose.map(Number)).toEqual([procPort]);
    expect(urlPort(healthText(services.processors))).toEqual({ port: procPort, path: '/healthz' });
    // Published ports stay on the host's loopback.
    for (const name of ['gateway', 'console', 'grafana']) {
      for (const p of services[name].ports) expect(String(p), `${name} publishes on 127.0.0.1`).toMatch(/^127\.0\.0\.1:/);
    }
    // No fixed producer id: each container is its own producer (its own hash chain).
    expect(cfg.evidence?.producerId).toBeUndefined();
    expect(cfg.dataDir).toBe('/var/lib/attest');
    for (const role of ROLES) {
      expect(services[role].volumes.some((v: string) => v.endsWith(`:${cfg.dataDir}`)), `${role}: dataDir is a volume`).toBe(true);
    }
  });

  it('Kafka runs single-node KRaft and attest.yaml points at its advertised listener', () => {
    const env = services.kafka.environment;
    expect(env.KAFKA_PROCESS_ROLES.split(',').sort()).toEqual(['broker', 'controller']);
    expect(env.KAFKA_CONTROLLER_QUORUM_VOTERS).toBe(`${env.KAFKA_NODE_ID}@kafka:9093`);
    expect(env.KAFKA_LISTENERS).toContain('CONTROLLER://:9093');
    expect(env.KAFKA_CONTROLLER_LISTENER_NAMES).toBe('CONTROLLER');
    expect(env.CLUSTER_ID).toMatch(/^[A-Za-z0-9_-]{22}$/); // a base64url UUID, as kafka-storage.sh random-uuid prints
    expect(env.KAFKA_AUTO_CREATE_TOPICS_ENABLE).toBe('false');
    expect(String(services.kafka.image)).toMatch(/^apache\/kafka:/);
    expect(cfg.log.kind).toBe('kafka');
    const advertised = env.KAFKA_ADVERTISED_LISTENERS.split(',').map((l: string) => l.replace(/^\w+:\/\//, ''));
    for (const broker of cfg.log.kafka.brokers) {
      expect(advertised, `broker ${broker} is advertised`).toContain(broker);
      expect(services[broker.split(':')[0]], `broker host ${broker} is a service`).toBeDefined();
    }
  });

  it('the topics Attest creates at start fit the single broker', () => {
    const k = cfg.log.kafka;
    // Nothing else creates topics in compose, and the broker does not auto-create them.
    expect(k.createTopics).toBe(true);
    expect(services.kafka.environment.KAFKA_AUTO_CREATE_TOPICS_ENABLE).toBe('false');
    // One broker: more replicas than brokers is refused by ensureKafkaTopics().
    expect(k.replicationFactor).toBe(1);
    expect(k.minInsyncReplicas).toBe(1);
    // The names are the documented ones (docs/kafka.md), so tooling and docs apply as written.
    expect(kafkaTopicSpecs({ replicationFactor: 1, names: k.topics }).map((s: TopicSpec) => s.name)).toEqual(
      kafkaTopicSpecs({ replicationFactor: 1 }).map((s: TopicSpec) => s.name),
    );
  });

  it('ClickHouse users, Grafana and the Attest roles agree on names and credentials', () => {
    const ch = cfg.store.clickhouse;
    expect(cfg.store.kind).toBe('clickhouse');
    const url = new URL(ch.url);
    expect(services[url.hostname], 'ClickHouse host is a service').toBeDefined();
    expect(urlPort(healthText(services.clickhouse))?.port).toBe(Number(url.port));
    // users.d defines both users, with passwords from the environment only.
    const users = read(join(COMPOSE_DIR, 'clickhouse/users.d/attest.xml'));
    const userBlock = (u: string) => new RegExp(`<${u}>([\\s\\S]*?)</${u}>`).exec(users)?.[1] ?? '';
    expect(userBlock(ch.username)).toContain(`<password from_env="${ch.password.env}"/>`);
    expect(userBlock(ch.readonlyUsername)).toContain(`<password from_env="${ch.readonlyPassword.env}"/>`);
    expect(userBlock(ch.readonlyUsername)).toMatch(/<profile>(\w+)<\/profile>/);
    const roProfile = /<profile>(\w+)<\/profile>/.exec(userBlock(ch.readonlyUsername))![1]!;
    expect(new RegExp(`<${roProfile}>[\\s\\S]*?<readonly>1</readonly>`).test(users), 'auditor profile is readonly=1').toBe(true);
    expect(userBlock(ch.readonlyUsername)).toContain(`GRANT SELECT ON ${ch.database}.*`);
    const mounts: string[] = services.clickhouse.volumes;
    expect(mounts.some((m) => m.startsWith('./clickhouse/users.d/attest.xml:/etc/clickhouse-server/users.d/'))).toBe(true);
    expect(mounts.some((m) => m.startsWith('./clickhouse/config.d/attest.xml:/etc/clickhouse-server/config.d/'))).toBe(true);
    for (const v of [ch.password.env, ch.readonlyPassword.env]) expect(services.clickhouse.environment, `clickhouse gets ${v}`).toHaveProperty([v]);
    // Each role gets only the credentials it uses.
    expect(services.processors.environment).toHaveProperty([ch.password.env]);
    expect(services.console.environment).toHaveProperty([ch.readonlyPassword.env]);
    expect(services.console.environment).not.toHaveProperty([ch.password.env]);
    expect(services.gateway.environment).not.toHaveProperty([ch.password.env]);
    expect(services.gateway.environment).not.toHaveProperty([ch.readonlyPassword.env]);
    // Grafana: the ClickHouse plugin, and the provisioned datasource as the readonly user.
    const g = services.grafana;
    expect(g.environment.GF_INSTALL_PLUGINS).toContain('grafana-clickhouse-datasource');
    expect(g.volumes).toContain('./grafana/provisioning/datasources:/etc/grafana/provisioning/datasources:ro');
    const ds = yamlDoc(join(COMPOSE_DIR, 'grafana/provisioning/datasources/clickhouse.yaml')).datasources;
    expect(ds).toHaveLength(1);
    expect(ds[0].type).toBe('grafana-clickhouse-datasource');
    expect(ds[0].jsonData).toMatchObject({ host: url.hostname, port: Number(url.port), protocol: 'http', username: ch.readonlyUsername, defaultDatabase: ch.database });
    expect(ds[0].secureJsonData.password).toBe(`\${${ch.readonlyPassword.env}}`);
    expect(g.environment).toHaveProperty([ch.readonlyPassword.env]);
  });

  it('secret files named in attest.yaml are compose secrets given to the role that reads them', () => {
    const fileSecret = (src: J) => /^\/run\/secrets\/(.+)$/.exec(src?.file ?? '')?.[1];
    const wanted: Array<[Role, string | undefined]> = [
      ['gateway', fileSecret(cfg.upstream.anthropic.apiKey)],
      ['processors', fileSecret(cfg.approvals?.notify?.webhook)],
    ];
    for (const [role, name] of wanted) {
      expect(name, `${role}: a /run/secrets file`).toBeDefined();
      expect(compose.secrets).toHaveProperty([name!]);
      expect(services[role].secrets, `${role} gets ${name}`).toContain(name);
    }
    expect(services.console.secrets ?? []).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('deploy/k8s', () => {
  const kustomization = yamlDoc(join(K8S_DIR, 'kustomization.yaml'));
  const resources: string[] = kustomization.resources;
  const manifests = resources.flatMap((f) => yamlDocs(join(K8S_DIR, f)).map((doc) => ({ file: f, doc })));
  const ofKind = (kind: string) => manifests.filter((m) => m.doc.kind === kind).map((m) => m.doc);
  const deployments = ofKind('Deployment');
  const deploymentOf = (role: Role) => deployments.find((d) => d.metadata.labels?.['app.kubernetes.io/component'] === role);
  const generator = (kustomization.configMapGenerator as J[]).find((g) => g.name === 'attest-config');
  const cfgFile = join(K8S_DIR, 'attest.yaml');
  const cfg = yamlDoc(cfgFile);
  const secretTemplate = yamlDoc(join(K8S_DIR, 'secret.example.yaml'));
  const OPTIONAL = ['secret.example.yaml', 'kafka-topics.strimzi.yaml'];

  const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
    Object.entries(selector).every(([k, v]) => labels[k] === v);
  const container = (d: J) => d.spec.template.spec.containers[0];
  const namedPort = (d: J, port: J): number =>
    typeof port === 'number' ? port : container(d).ports.find((p: J) => p.name === port)?.containerPort;

  it('kustomization lists files that exist; every manifest parses and is listed or a documented optional file', () => {
    const listed = [...resources, ...(generator?.files ?? [])];
    for (const f of listed) expect(existsSync(join(K8S_DIR, f)), `${f} exists`).toBe(true);
    expect(generator?.files).toEqual(['attest.yaml']);
    for (const f of walk(K8S_DIR).filter(isYaml).map((p) => relative(K8S_DIR, p))) {
      if (f === 'kustomization.yaml') continue;
      expect(listed.includes(f) || OPTIONAL.includes(f), `${f} is in kustomization.yaml or optional`).toBe(true);
      if (f === 'attest.yaml') continue;
      for (const doc of yamlDocs(join(K8S_DIR, f))) {
        expect(doc.apiVersion, `${f}: apiVersion`).toBeTruthy();
        expect(doc.kind, `${f}: kind`).toBeTruthy();
        expect(doc.metadata?.name, `${f}: metadata.name`).toBeTruthy();
      }
    }
    for (const f of OPTIONAL) expect(resources).not.toContain(f);
    expect(kustomization.namespace).toBe('attest');
    expect(ofKind('Namespace').map((n) => n.metadata.name)).toEqual([kustomization.namespace]);
  });

  it('every Deployment has resources, probes, a locked-down securityContext and a Service selecting it', () => {
    expect(deployments.map((d) => d.metadata.labels['app.kubernetes.io/component']).sort()).toEqual([...ROLES].sort());
    for (const d of deployments) {
      const name = d.metadata.name;
      const pod = d.spec.template.spec;
      expect(matches(d.spec.selector.matchLabels, d.spec.template.metadata.labels), `${name}: selector matches its pods`).toBe(true);
      expect(pod.securityContext.runAsNonRoot, `${name}: pod runAsNonRoot`).toBe(true);
      expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
      expect(pod.securityContext.seccompProfile?.type).toBe('RuntimeDefault');
      expect(pod.automountServiceAccountToken).toBe(false);
      for (const c of pod.containers) {
        expect(c.resources?.requests?.cpu, `${name}/${c.name}: cpu request`).toBeTruthy();
        expect(c.resources?.requests?.memory, `${name}/${c.name}: memory request`).toBeTruthy();
        expect(c.resources?.limits?.memory, `${name}/${c.name}: memory limit`).toBeTruthy();
        expect(c.readinessProbe?.httpGet, `${name}/${c.name}: readiness probe`).toBeDefined();
        expect(c.livenessProbe?.httpGet, `${name}/${c.name}: liveness probe`).toBeDefined();
        expect(c.securityContext?.runAsNonRoot).toBe(true);
        expect(c.securityContext?.readOnlyRootFilesystem, `${name}/${c.name}: readOnlyRootFilesystem`).toBe(true);
        expect(c.securityContext?.allowPrivilegeEscalation).toBe(false);
        expect(c.securityContext?.capabilities?.drop).toEqual(['ALL']);
        for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe].filter(Boolean)) {
          expect(namedPort(d, probe.httpGet.port), `${name}: probe port is a container port`).toBeDefined();
        }
        // Every mounted volume is declared; a writable /tmp exists (tsx caches compiled code there).
        const vols = new Set(pod.volumes.map((v: J) => v.name));
        for (const m of c.volumeMounts) expect(vols.has(m.name), `${name}: volume ${m.name}`).toBe(true);
        expect(c.volumeMounts.some((m: J) => m.mountPath === '/tmp')).toBe(true);
      }
      const svc = ofKind('Service').find((s) => matches(s.spec.selector, d.spec.template.metadata.labels));
      expect(svc, `${name}: a Service selects its pods`).toBeDefined();
      expect(matches(svc!.spec.selector, d.spec.template.metadata.labels)).toBe(true);
      for (const p of svc!.spec.ports) expect(namedPort(d, p.targetPort), `${svc!.metadata.name}: targetPort ${p.targetPort}`).toBeDefined();
    }
  });

  it('the gateway runs 2 replicas behind a PodDisruptionBudget, ready on /readyz, live on /healthz', () => {
    const gw = deploymentOf('gateway')!;
    expect(gw.spec.replicas).toBe(2);
    const c = container(gw);
    expect(c.readinessProbe.httpGet.path).toBe('/readyz');
    expect(c.livenessProbe.httpGet.path).toBe('/healthz');
    const pdb = ofKind('PodDisruptionBudget').find((p) => matches(p.spec.selector.matchLabels, gw.spec.template.metadata.labels));
    expect(pdb, 'PodDisruptionBudget for the gateway').toBeDefined();
    expect(pdb!.spec.minAvailable).toBeGreaterThanOrEqual(1);
    expect(pdb!.spec.minAvailable).toBeLessThan(gw.spec.replicas);
    // Termination grace covers the configured drain.
    const graceMs = cfg.limits?.shutdownGraceMs ?? 30_000;
    expect(gw.spec.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(graceMs);
    expect(deploymentOf('processors')!.spec.replicas).toBe(1);
    expect(deploymentOf('console')!.spec.replicas).toBeGreaterThanOrEqual(1);
  });

  it('NetworkPolicies deny ingress by default and admit only labelled namespaces to the gateway and console', () => {
    const policies = ofKind('NetworkPolicy');
    const deny = policies.find((p) => Object.keys(p.spec.podSelector ?? {}).length === 0 && p.spec.policyTypes.includes('Ingress'));
    expect(deny, 'default deny').toBeDefined();
    expect(deny!.spec.ingress ?? []).toEqual([]);
    const ports: Record<Role, number> = { gateway: cfg.server.port, console: cfg.console.port, processors: cfg.processors?.port ?? DEFAULT_PROCESSORS_PORT };
    for (const role of ROLES) {
      const labels = deploymentOf(role)!.spec.template.metadata.labels;
      const own = policies.filter((p) => Object.keys(p.spec.podSelector?.matchLabels ?? {}).length > 0 && matches(p.spec.podSelector.matchLabels, labels));
      expect(own.length, `${role}: a NetworkPolicy selects it`).toBeGreaterThan(0);
      for (const p of own) {
        for (const rule of p.spec.ingress) {
          expect(rule.from?.length, `${p.metadata.name}: ingress names its sources`).toBeGreaterThan(0);
          for (const from of rule.from) {
            expect(from.ipBlock?.cidr, `${p.metadata.name}: not open to the world`).not.toBe('0.0.0.0/0');
            expect(from.namespaceSelector ?? from.podSelector, `${p.metadata.name}: a selector`).toBeDefined();
            if (from.namespaceSelector) expect(Object.keys(from.namespaceSelector.matchLabels ?? {}).length).toBeGreaterThan(0);
          }
          expect(rule.ports.map((x: J) => x.port)).toEqual([ports[role]]);
        }
      }
    }
  });

  it('the ConfigMap attest.yaml names the ports the Deployments and Services serve', () => {
    expect(cfg.server.host).toBe('0.0.0.0');
    expect(cfg.console.host).toBe('0.0.0.0');
    const expected: Record<Role, number> = { gateway: cfg.server.port, console: cfg.console.port, processors: cfg.processors?.port ?? DEFAULT_PROCESSORS_PORT };
    for (const role of ROLES) {
      const d = deploymentOf(role)!;
      const c = container(d);
      expect(c.ports.map((p: J) => p.containerPort), `${role}: container port`).toEqual([expected[role]]);
      const svc = ofKind('Service').find((s) => matches(s.spec.selector, d.spec.template.metadata.labels))!;
      expect(svc.spec.ports.map((p: J) => namedPort(d, p.targetPort))).toEqual([expected[role]]);
      // The config comes from the generated ConfigMap, mounted where --config points.
      const volume = d.spec.template.spec.volumes.find((v: J) => v.configMap?.name === generator.name);
      expect(volume, `${role}: mounts ConfigMap ${generator.name}`).toBeDefined();
      const mount = c.volumeMounts.find((m: J) => m.name === volume.name);
      expect(c.args).toEqual([role, '--config', `${mount.mountPath}/attest.yaml`]);
      // dataDir is writable (an emptyDir), keys/ is the shared claim.
      const data = c.volumeMounts.find((m: J) => m.mountPath === cfg.dataDir);
      expect(d.spec.template.spec.volumes.find((v: J) => v.name === data?.name)?.emptyDir, `${role}: dataDir volume`).toBeDefined();
      const keys = c.volumeMounts.find((m: J) => m.mountPath === `${cfg.dataDir}/keys`);
      expect(d.spec.template.spec.volumes.find((v: J) => v.name === keys?.name)?.persistentVolumeClaim?.claimName).toBe('attest-keys');
    }
    expect(ofKind('PersistentVolumeClaim').find((p) => p.metadata.name === 'attest-keys')?.spec.accessModes).toEqual(['ReadWriteMany']);
    expect(cfg.evidence?.producerId, 'no shared producer id across replicas').toBeUndefined();
    expect(cfg.identity.devIssuer?.enabled).toBe(false);
    expect(cfg.log.kind).toBe('kafka');
    expect(cfg.store.kind).toBe('clickhouse');
  });

  it('every secret attest.yaml names reaches exactly the role that reads it, from the Secret template keys', () => {
    const keys = Object.keys(secretTemplate.stringData);
    const secretName = secretTemplate.metadata.name;
    const fileIn = (role: Role, path: string) => {
      const d = deploymentOf(role)!;
      const c = container(d);
      const mount = c.volumeMounts.find((m: J) => path.startsWith(`${m.mountPath}/`));
      if (!mount) return undefined;
      const vol = d.spec.template.spec.volumes.find((v: J) => v.name === mount.name);
      if (vol?.secret?.secretName !== secretName) return undefined;
      return vol.secret.items.find((i: J) => `${mount.mountPath}/${i.path}` === path)?.key as string | undefined;
    };
    const envIn = (role: Role, name: string) => {
      const e = (container(deploymentOf(role)!).env ?? []).find((x: J) => x.name === name);
      return e?.valueFrom?.secretKeyRef?.name === secretName ? (e.valueFrom.secretKeyRef.key as string) : undefined;
    };
    const ch = cfg.store.clickhouse;
    const wants: Array<[Role, string | undefined]> = [
      ['gateway', fileIn('gateway', cfg.upstream.anthropic.apiKey.file)],
      ['processors', fileIn('processors', cfg.approvals.notify.webhook.file)],
      ['processors', envIn('processors', ch.password.env)],
      ['console', envIn('console', ch.readonlyPassword.env)],
    ];
    for (const [role, key] of wants) {
      expect(key, `${role}: secret wired`).toBeDefined();
      expect(keys).toContain(key);
    }
    expect(envIn('console', ch.password.env), 'the console never gets the writer password').toBeUndefined();
    expect(envIn('gateway', ch.password.env)).toBeUndefined();
    expect(envIn('gateway', ch.readonlyPassword.env)).toBeUndefined();
  });

  it('the Secret template holds placeholders only', () => {
    expect(secretTemplate.kind).toBe('Secret');
    expect(secretTemplate.data).toBeUndefined();
    for (const [k, v] of Object.entries(secretTemplate.stringData)) expect(v, `${k}`).toBe('REPLACE_ME');
  });

  it('the Strimzi KafkaTopics match kafkaTopicSpecs() and the topic names in attest.yaml', () => {
    const topics = yamlDocs(join(K8S_DIR, 'kafka-topics.strimzi.yaml'));
    const k = cfg.log.kafka;
    // Strimzi owns the topics, so Attest must not try to create them (its user needs no CREATE ACL).
    expect(k.createTopics).toBe(false);
    const specs = kafkaTopicSpecs({ names: k.topics, eventPartitions: k.partitions, replicationFactor: k.replicationFactor, minInsyncReplicas: k.minInsyncReplicas });
    expect(topics.map((t) => ({ name: t.spec.topicName, partitions: t.spec.partitions, replicationFactor: t.spec.replicas, configs: t.spec.config }))).toEqual(
      specs.map((s: TopicSpec) => ({ name: s.name, partitions: s.partitions, replicationFactor: s.replicationFactor, configs: { ...s.configs } })),
    );
  });
});

// ---------------------------------------------------------------------------------------------

describe('no secret is committed under deploy/', () => {
  const files = walk(DEPLOY);
  const SHAPES: Array<[string, RegExp]> = [
    ['Anthropic API key', /sk-ant-[A-Za-z0-9_-]{8,}/],
    ['AWS access key', /\bAKIA[0-9A-Z]{16}\b/],
    ['private key', /-----BEGIN [A-Z ]*PRIVATE KEY-----/],
    ['Slack webhook', /hooks\.slack\.com\/services\/T[A-Z0-9]+\/B[A-Z0-9]+/],
    ['Slack token', /\bxox[abposr]-[A-Za-z0-9-]{10,}/],
    ['GitHub token', /\bgh[pousr]_[A-Za-z0-9]{30,}/],
    ['JWT', /\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\./],
    ['credentials in a URL', /[a-z][a-z0-9+.-]*:\/\/[^\s/:@'"]+:[^\s/@'"]+@/i],
  ];
  /** Keys whose values are credentials. `secretName`, `secretKeyRef` and the like name things, not values. */
  const SENSITIVE_KEY = /(password|passwd|secret|token|api[-_]?key|credentials?|webhook[-_]?url)$/i;
  /** What a sensitive value may be: a reference to where the secret lives, or a template placeholder. */
  const REFERENCE = [
    /^$/,
    /^\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}$/, // ${VAR}, ${VAR:-x}, ${VAR:?message}
    /^\$__(env|file)\{[^}]+\}$/, // Grafana provisioning
    /^REPLACE_ME$/,
    /^\/(run\/secrets|etc\/attest\/secrets)\/[\w.-]+$/,
  ];

  it('finds no known secret shapes in any file', () => {
    expect(files.length).toBeGreaterThan(10);
    for (const f of files) {
      const text = read(f);
      for (const [what, re] of SHAPES) expect(re.test(text), `${relative(ROOT, f)}: looks like a ${what}`).toBe(false);
    }
  });

  it('every credential-named YAML value is a reference or a placeholder', () => {
    const visit = (node: J, path: string[], file: string) => {
      if (Array.isArray(node)) node.forEach((n, i) => visit(n, [...path, String(i)], file));
      else if (node && typeof node === 'object') for (const [k, v] of Object.entries(node)) visit(v, [...path, k], file);
      else if (path.length > 0 && SENSITIVE_KEY.test(path[path.length - 1]!) && node !== null && typeof node !== 'boolean') {
        const v = String(node);
        expect(REFERENCE.some((r) => r.test(v)), `${relative(ROOT, file)}: ${path.join('.')} holds a literal value`).toBe(true);
      }
    };
    for (const f of files.filter(isYaml)) for (const doc of yamlDocs(f)) visit(doc, [], f);
  });

  it('env files and ClickHouse users carry no values', () => {
    const example = read(join(COMPOSE_DIR, '.env.example'));
    for (const line of example.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))) {
      expect(line, '.env.example leaves every value empty').toMatch(/^[A-Z_][A-Z0-9_]*=$/);
    }
    expect(files.some((f) => /(^|\/)\.env$/.test(f))).toBe(false);
    for (const f of files.filter((x) => x.endsWith('.xml'))) {
      const xml = read(f);
      expect(xml, `${relative(ROOT, f)}: literal password`).not.toMatch(/<password>[^<]+<\/password>/);
      expect(xml, `${relative(ROOT, f)}: password hash`).not.toMatch(/<password_(sha256|double_sha1)_hex>/);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The config files in deploy/ against the real schema. These need the distributed-mode keys
// (`log.kind` / `log.kafka`, `store.kind` / `store.clickhouse`) in services/common/src/config/schema.ts.

describe('deploy/ config files are valid Attest configs', () => {
  it('deploy/compose/attest.yaml', () => {
    const file = join(COMPOSE_DIR, 'attest.yaml');
    expect(() => parseConfigText(read(file), file, {})).not.toThrow();
  });

  it('deploy/k8s/attest.yaml (the ConfigMap)', () => {
    const file = join(K8S_DIR, 'attest.yaml');
    expect(() => parseConfigText(read(file), file, {})).not.toThrow();
  });
});
