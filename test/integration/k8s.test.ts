// The Kubernetes files in k8s/, checked offline: every YAML document parses, every
// built-in kind validates against the Kubernetes schemas (kubernetes-models), the
// ServiceMonitor CRD gets a structural check, and the pieces agree with each other
// and with Herald: kustomization lists, ports, probes, shutdown timing, security
// context, env names documented in README.md, the Dockerfile. No cluster and no
// kubectl are involved; what that leaves untested is listed in k8s/README.md.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Deployment, type IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import { type IStatefulSet, StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { HorizontalPodAutoscaler, type IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { type IIngress, Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { type INetworkPolicy, NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { type IPodDisruptionBudget, PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap, type IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import { Secret } from 'kubernetes-models/v1/Secret';
import { type IService, Service } from 'kubernetes-models/v1/Service';
import t from 'tap';
import { parseAllDocuments } from 'yaml';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const K8S = join(ROOT, 'k8s');

/** Documented examples: in k8s/ but deliberately not in any kustomization (see k8s/README.md). */
const EXAMPLES = ['ingress.example.yaml'];

type Obj = Record<string, unknown>;

interface Doc {
  /** Path relative to k8s/, e.g. `redis/redis.yaml`. */
  file: string;
  obj: Obj;
}

interface Kustomization {
  apiVersion?: unknown;
  kind?: unknown;
  resources?: unknown;
  commonLabels?: unknown;
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...yamlFiles(path));
    else if (/\.ya?ml$/.test(name)) out.push(path);
  }
  return out;
}

// Parse everything once; failures are collected here and reported by the first test,
// so one broken file does not hide what the other tests would say.
const parseErrors: string[] = [];
const docs: Doc[] = [];
for (const path of yamlFiles(K8S)) {
  const file = relative(K8S, path);
  for (const doc of parseAllDocuments(readFileSync(path, 'utf8'))) {
    for (const err of [...doc.errors, ...doc.warnings]) parseErrors.push(`${file}: ${err.message}`);
    if (doc.errors.length > 0) continue;
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue; // an empty document (a trailing `---`)
    if (!isObj(value)) parseErrors.push(`${file}: a document is not a mapping`);
    else docs.push({ file, obj: value });
  }
}

const isKustomization = (d: Doc): boolean => d.file === 'kustomization.yaml' || d.file.endsWith('/kustomization.yaml');
const objects = docs.filter((d) => !isKustomization(d));

function describe(d: Doc): string {
  const meta = isObj(d.obj['metadata']) ? d.obj['metadata'] : {};
  return `${d.file}: ${String(d.obj['kind'])}/${String(meta['name'])}`;
}

/** The one object that `guard` accepts with this name, else a thrown error naming what is missing. */
function one<T extends { metadata?: { name?: string } }>(
  guard: (v: unknown) => v is T,
  name: string,
  where: (d: Doc) => boolean = () => true,
): T {
  const found = objects
    .filter(where)
    .map((d) => d.obj)
    .filter(guard)
    .filter((o) => o.metadata?.name === name);
  if (found.length !== 1) throw new Error(`expected exactly one such object named ${name}, found ${found.length}`);
  return found[0] as T;
}

const inBase = (d: Doc): boolean => !d.file.includes('/') && !EXAMPLES.includes(d.file);

function schemaCheck<T>(model: { new (data: T): { validate(): void }; is(value: unknown): value is T }): (obj: unknown) => void {
  return (obj) => {
    if (!model.is(obj)) throw new Error('apiVersion/kind do not match the model');
    new model(obj).validate();
  };
}

/** apiVersion/kind → the kubernetes-models validator. Anything else must be a CRD with its own check. */
const SCHEMAS = new Map<string, (obj: unknown) => void>([
  ['v1/ConfigMap', schemaCheck(ConfigMap)],
  ['v1/Secret', schemaCheck(Secret)],
  ['v1/Service', schemaCheck(Service)],
  ['apps/v1/Deployment', schemaCheck(Deployment)],
  ['apps/v1/StatefulSet', schemaCheck(StatefulSet)],
  ['autoscaling/v2/HorizontalPodAutoscaler', schemaCheck(HorizontalPodAutoscaler)],
  ['policy/v1/PodDisruptionBudget', schemaCheck(PodDisruptionBudget)],
  ['networking.k8s.io/v1/NetworkPolicy', schemaCheck(NetworkPolicy)],
  ['networking.k8s.io/v1/Ingress', schemaCheck(Ingress)],
]);
const CRDS = new Set(['monitoring.coreos.com/v1/ServiceMonitor']);

function typeKey(obj: Obj): string {
  return `${String(obj['apiVersion'])}/${String(obj['kind'])}`;
}

/** `selector` is non-empty and every pair in it is in `labels`. */
function selects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  const pairs = Object.entries(selector ?? {});
  return pairs.length > 0 && pairs.every(([k, v]) => labels?.[k] === v);
}

/** Bytes in a Kubernetes memory quantity such as `256Mi`, `1Gi` or `500M`. */
function bytes(quantity: string | number | undefined): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(quantity));
  if (m === null) return NaN;
  const unit = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2] ?? ''] ?? 1;
  return Number(m[1]) * unit;
}

function documentedVariables(): Set<string> {
  const doc = readFileSync(join(ROOT, 'docs', 'CONFIGURATION.md'), 'utf8');
  const names = new Set<string>();
  for (const line of doc.split('\n')) {
    const m = /^\|\s*`(HERALD_[A-Z0-9_]+)`\s*\|/.exec(line);
    if (m?.[1] !== undefined) names.add(m[1]);
  }
  return names;
}

// The Herald objects most tests look at; `one` throws (failing the test that asks)
// when one is missing or duplicated.
const deployment = (): IDeployment => one(Deployment.is, 'herald', inBase);
const configMap = (): IConfigMap => one(ConfigMap.is, 'herald', inBase);
const service = (): IService => one(Service.is, 'herald', inBase);
function podSpec(): IPodSpec {
  const spec = deployment().spec?.template.spec;
  if (spec === undefined) throw new Error('the Deployment has no pod template spec');
  return spec;
}
function herald(): IContainer {
  const c = podSpec().containers.find((x) => x.name === 'herald');
  if (c === undefined) throw new Error('the Deployment has no container named herald');
  return c;
}
function httpPort(): number {
  const p = herald().ports?.find((x) => x.name === 'http');
  if (p === undefined) throw new Error('the herald container has no port named http');
  return p.containerPort;
}

t.test('every YAML file under k8s/ parses without errors or warnings and holds at least one object', async (t) => {
  t.strictSame(parseErrors, []);
  const files = yamlFiles(K8S).map((p) => relative(K8S, p));
  t.ok(files.length >= 11, `found ${files.length} YAML files`);
  for (const file of files)
    t.ok(
      docs.some((d) => d.file === file),
      `${file} holds an object`,
    );
  for (const d of objects) {
    const meta = d.obj['metadata'];
    t.ok(isObj(meta) && typeof meta['name'] === 'string' && meta['name'] !== '', `${describe(d)} has a metadata.name`);
    t.notOk(isObj(meta) && 'namespace' in meta, `${describe(d)} has no namespace (the base is namespace-less)`);
  }
});

t.test('every built-in object validates against its Kubernetes schema offline', async (t) => {
  for (const d of objects) {
    const key = typeKey(d.obj);
    if (CRDS.has(key)) continue;
    const check = SCHEMAS.get(key);
    if (check === undefined) {
      t.fail(`${describe(d)}: no schema for ${key}; add its kubernetes-models class or a CRD check`);
      continue;
    }
    t.doesNotThrow(() => check(d.obj), describe(d));
  }
});

t.test('the offline validator rejects a string containerPort and a ConfigMap value that is not a string', async (t) => {
  // Proves the schema check above is live, not a no-op: these are the two YAML slips
  // (an unquoted number in a ConfigMap, a quoted port) a cluster would refuse.
  const bad = structuredClone(deployment()) as unknown as {
    spec: { template: { spec: { containers: Array<{ ports: Array<{ containerPort: unknown }> }> } } };
  };
  const port = bad.spec.template.spec.containers[0]?.ports[0];
  t.ok(port !== undefined, 'the Deployment has a container port to break');
  if (port !== undefined) port.containerPort = '8080';
  t.throws(() => SCHEMAS.get('apps/v1/Deployment')?.(bad), /containerPort must be integer/);
  const cm = { ...configMap(), data: { HERALD_PORT: 8080 } };
  t.throws(() => SCHEMAS.get('v1/ConfigMap')?.(cm), /must be string/);
});

t.test('each kustomization lists every manifest in its directory except the documented examples, and nothing outside it', async (t) => {
  const kustomizations = docs.filter(isKustomization);
  t.strictSame(kustomizations.map((d) => d.file).sort(), ['kustomization.yaml', 'redis/kustomization.yaml']);
  for (const k of kustomizations) {
    const dir = k.file.includes('/') ? k.file.slice(0, k.file.lastIndexOf('/')) : '';
    const body = k.obj as Kustomization;
    t.equal(body.apiVersion, 'kustomize.config.k8s.io/v1beta1', `${k.file} apiVersion`);
    t.equal(body.kind, 'Kustomization', `${k.file} kind`);
    const resources = Array.isArray(body.resources) ? body.resources.map(String) : [];
    for (const r of resources) {
      // kustomize refuses an overlay nested in the base it includes (a root cycle),
      // and a file outside the kustomization's root (the load restrictor).
      t.notOk(r.startsWith('..') || r.startsWith('/'), `${k.file}: ${r} stays inside its directory`);
      t.ok(existsSync(join(K8S, dir, r)), `${k.file}: ${r} exists`);
    }
    const manifests = readdirSync(join(K8S, dir))
      .filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml' && !EXAMPLES.includes(f))
      .sort();
    t.strictSame([...resources].sort(), manifests, `${k.file} lists exactly the manifests in k8s/${dir}`);
  }
  const subdirs = readdirSync(K8S).filter((f) => statSync(join(K8S, f)).isDirectory());
  for (const sub of subdirs) t.ok(existsSync(join(K8S, sub, 'kustomization.yaml')), `k8s/${sub}/ has its own kustomization.yaml`);

  const base = docs.find((d) => d.file === 'kustomization.yaml')?.obj as Kustomization | undefined;
  t.strictSame(base?.commonLabels, { 'app.kubernetes.io/name': 'herald' }, 'the base labels everything app.kubernetes.io/name: herald');
  const readme = readFileSync(join(K8S, 'README.md'), 'utf8');
  for (const example of EXAMPLES) {
    t.ok(existsSync(join(K8S, example)), `${example} exists`);
    t.match(readme, example, `k8s/README.md documents ${example}`);
  }
});

t.test('the ServiceMonitor scrapes /metrics on a named port of the Herald Service it selects by label', async (t) => {
  const monitors = objects.filter((d) => d.obj['kind'] === 'ServiceMonitor');
  t.equal(monitors.length, 1, 'one ServiceMonitor');
  const sm = monitors[0]?.obj ?? {};
  t.equal(sm['apiVersion'], 'monitoring.coreos.com/v1');
  const spec = isObj(sm['spec']) ? sm['spec'] : {};
  const selector = isObj(spec['selector']) ? spec['selector'] : {};
  const matchLabels = isObj(selector['matchLabels']) ? (selector['matchLabels'] as Record<string, string>) : undefined;
  const svc = service();
  t.ok(selects(matchLabels, svc.metadata?.labels), 'spec.selector.matchLabels selects the herald Service by its labels');
  const endpoints = Array.isArray(spec['endpoints']) ? spec['endpoints'].filter(isObj) : [];
  t.ok(endpoints.length > 0, 'at least one endpoint');
  const portNames = (svc.spec?.ports ?? []).map((p) => p.name);
  for (const e of endpoints) {
    t.ok(typeof e['port'] === 'string' && portNames.includes(e['port']), `endpoint port ${String(e['port'])} is a named Service port`);
    t.equal(e['path'], '/metrics', 'endpoint path');
  }
});

t.test('the Deployment probes /healthz for liveness and /readyz every 5 s for readiness on the named http port', async (t) => {
  const c = herald();
  t.equal(httpPort(), 8080, 'container port http is 8080');
  t.equal(c.livenessProbe?.httpGet?.path, '/healthz');
  t.equal(c.livenessProbe?.httpGet?.port, 'http');
  t.equal(c.readinessProbe?.httpGet?.path, '/readyz');
  t.equal(c.readinessProbe?.httpGet?.port, 'http');
  t.equal(c.readinessProbe?.periodSeconds, 5);
});

t.test('HERALD_PORT in the ConfigMap is the container port and Service links cannot inject HERALD_PORT=tcp://…', async (t) => {
  // With service links on, a Service named herald gives every pod HERALD_PORT=tcp://<ip>:8080.
  t.equal(configMap().data?.['HERALD_PORT'], String(httpPort()));
  t.equal(podSpec().enableServiceLinks, false);
});

t.test('terminationGracePeriodSeconds exceeds the preStop sleep plus HERALD_SHUTDOWN_TIMEOUT_S from the ConfigMap', async (t) => {
  const command = herald().lifecycle?.preStop?.exec?.command ?? [];
  t.equal(command[0], 'sleep', 'preStop runs sleep');
  const sleep = Number(command[1]);
  t.ok(Number.isInteger(sleep) && sleep > 0, `preStop sleeps a whole number of seconds (${String(command[1])})`);
  const shutdown = Number(configMap().data?.['HERALD_SHUTDOWN_TIMEOUT_S']);
  t.ok(Number.isInteger(shutdown) && shutdown > 0, 'the ConfigMap sets HERALD_SHUTDOWN_TIMEOUT_S');
  const grace = podSpec().terminationGracePeriodSeconds ?? 30; // Kubernetes' default
  t.ok(grace > sleep + shutdown, `grace ${grace} s > preStop ${sleep} s + shutdown ${shutdown} s`);
});

t.test(
  'the Herald container runs as user 10001, non-root, read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp',
  async (t) => {
    const pod = podSpec().securityContext ?? {};
    const c = herald().securityContext ?? {};
    // The container's own setting wins over the pod's, as in Kubernetes.
    t.equal(c.runAsNonRoot ?? pod.runAsNonRoot, true, 'runAsNonRoot');
    t.equal(c.runAsUser ?? pod.runAsUser, 10001, 'runAsUser');
    t.equal(c.readOnlyRootFilesystem, true, 'readOnlyRootFilesystem');
    t.equal(c.allowPrivilegeEscalation, false, 'allowPrivilegeEscalation');
    t.strictSame(c.capabilities?.drop, ['ALL'], 'capabilities drop ALL');
    t.equal(c.capabilities?.add, undefined, 'no capability added');
    t.equal((c.seccompProfile ?? pod.seccompProfile)?.type, 'RuntimeDefault', 'seccompProfile');
    t.equal(c.privileged ?? false, false, 'not privileged');
  },
);

t.test('/tmp is a writable emptyDir in the Herald container', async (t) => {
  const mount = herald().volumeMounts?.find((m) => m.mountPath === '/tmp');
  t.ok(mount !== undefined, 'a volume is mounted at /tmp');
  t.notOk(mount?.readOnly, 'mounted read-write');
  const volume = podSpec().volumes?.find((v) => v.name === mount?.name);
  t.ok(volume?.emptyDir !== undefined, 'the volume is an emptyDir');
});

t.test('every env var the ConfigMap and Deployment set is in docs/CONFIGURATION.md', async (t) => {
  const documented = documentedVariables();
  t.ok(documented.size >= 20 && documented.has('HERALD_PORT'), `the configuration table parses (${documented.size} variables)`);
  const c = herald();
  const names = [...Object.keys(configMap().data ?? {}), ...(c.env ?? []).map((e) => e.name)];
  t.ok(names.length > 0);
  for (const name of names) {
    t.ok(documented.has(name), `${name} is documented in docs/CONFIGURATION.md`);
  }
  for (const from of c.envFrom ?? []) t.equal(from.prefix, undefined, 'envFrom adds no prefix to the documented names');
});

/**
 * The `kubectl create secret generic <name> --from-literal=KEY=…` commands in
 * k8s/README.md: Secret name -> the keys each command gives it.
 */
function documentedSecrets(): Map<string, Set<string>> {
  const readme = readFileSync(join(K8S, 'README.md'), 'utf8').replace(/\\\n\s*/g, ' ');
  const found = new Map<string, Set<string>>();
  for (const m of readme.matchAll(/kubectl(?: -n \S+)? create secret generic (\S+)([^\n]*)/g)) {
    const keys = found.get(m[1] as string) ?? new Set<string>();
    for (const k of (m[2] ?? '').matchAll(/--from-literal=([A-Z0-9_]+)=/g)) keys.add(k[1] as string);
    found.set(m[1] as string, keys);
  }
  return found;
}

t.test('no file under k8s/ holds a Secret: the base never creates or overwrites the real one', async (t) => {
  // A Secret in the repository is public (anyone can mint tokens with it), and one in
  // the base is re-applied over the real Secret by every `kubectl apply -k k8s/`.
  const secrets = objects.filter((d) => d.obj['kind'] === 'Secret').map(describe);
  t.strictSame(secrets, [], 'no Secret objects');
  const base = docs.find((d) => d.file === 'kustomization.yaml')?.obj ?? {};
  for (const generator of ['secretGenerator', 'generators']) t.notOk(generator in base, `the base kustomization has no ${generator}`);
});

t.test(
  "the Deployment's ConfigMap comes from the base and its Secret keys from the documented kubectl create secret command",
  async (t) => {
    const c = herald();
    const base = objects.filter(inBase);
    for (const from of c.envFrom ?? []) {
      t.equal(from.secretRef, undefined, 'no envFrom Secret (its keys would be unchecked)');
      const name = from.configMapRef?.name;
      t.ok(
        base.some((d) => d.obj['kind'] === 'ConfigMap' && isObj(d.obj['metadata']) && d.obj['metadata']['name'] === name),
        `envFrom ConfigMap ${String(name)} is in the base`,
      );
    }
    const documented = documentedSecrets();
    t.ok(documented.size > 0, 'k8s/README.md shows a kubectl create secret generic command');
    const refs = (c.env ?? []).flatMap((e) => (e.valueFrom?.secretKeyRef !== undefined ? [e.valueFrom.secretKeyRef] : []));
    t.ok(
      refs.some((r) => r.key === 'HERALD_JWT_SECRET' && r.optional !== true),
      'HERALD_JWT_SECRET comes from the Secret, required',
    );
    for (const ref of refs) {
      t.ok(documented.get(ref.name ?? '')?.has(ref.key), `the README's command creates Secret ${String(ref.name)} with key ${ref.key}`);
    }
  },
);

t.test("the Service selects the Deployment's pods and targets the named container port", async (t) => {
  const d = deployment();
  const labels = d.spec?.template.metadata?.labels;
  t.ok(selects(d.spec?.selector.matchLabels, labels), 'the Deployment selector matches its own pod template');
  const svc = service();
  t.ok(selects(svc.spec?.selector, labels), 'the Service selector matches the pod labels');
  const http = svc.spec?.ports?.find((p) => p.name === 'http');
  t.ok(http?.targetPort === 'http' || http?.targetPort === httpPort(), 'Service port http targets the container port');
});

t.test('the HPA scales the Deployment on CPU, the CPU request it needs is set, and the PDB covers the same pods', async (t) => {
  const hpa = one(HorizontalPodAutoscaler.is, 'herald', inBase) as IHorizontalPodAutoscaler;
  t.strictSame(hpa.spec?.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'herald' });
  t.ok(
    hpa.spec?.metrics?.some((m) => m.type === 'Resource' && m.resource?.name === 'cpu'),
    'a CPU resource metric',
  );
  t.ok((hpa.spec?.minReplicas ?? 1) >= 2, 'at least 2 replicas');
  const resources = herald().resources;
  t.ok(resources?.requests?.['cpu'] !== undefined, 'CPU request set (Utilization is relative to it)');
  const request = bytes(resources?.requests?.['memory']);
  const limit = bytes(resources?.limits?.['memory']);
  t.ok(
    request > 0 && limit >= request,
    `memory limit ${String(resources?.limits?.['memory'])} ≥ request ${String(resources?.requests?.['memory'])}`,
  );
  const pdb = one(PodDisruptionBudget.is, 'herald', inBase) as IPodDisruptionBudget;
  t.ok(selects(pdb.spec?.selector?.matchLabels, deployment().spec?.template.metadata?.labels), 'the PDB selects the pods');
});

t.test('the NetworkPolicy admits clients on the container port and lets the pods reach Redis and DNS', async (t) => {
  const np = one(NetworkPolicy.is, 'herald', inBase) as INetworkPolicy;
  t.ok(selects(np.spec?.podSelector.matchLabels, deployment().spec?.template.metadata?.labels), 'it applies to the Herald pods');
  t.ok(np.spec?.policyTypes?.includes('Ingress') && np.spec.policyTypes.includes('Egress'), 'both directions');
  const ingressPorts = (np.spec?.ingress ?? []).flatMap((r) => r.ports ?? []);
  t.ok(
    ingressPorts.some((p) => (p.protocol ?? 'TCP') === 'TCP' && (p.port === httpPort() || p.port === 'http')),
    'ingress allows the container port',
  );
  const egress = (np.spec?.egress ?? []).flatMap((r) => r.ports ?? []);
  const allows = (port: number, protocol: string): boolean => egress.some((p) => p.port === port && (p.protocol ?? 'TCP') === protocol);
  const redisUrl = new URL(configMap().data?.['HERALD_REDIS_URL'] ?? 'redis://missing');
  const redisPort = Number(redisUrl.port || 6379);
  t.ok(allows(redisPort, 'TCP'), `egress allows Redis on TCP ${redisPort} (HERALD_REDIS_URL)`);
  t.ok(allows(53, 'UDP') && allows(53, 'TCP'), 'egress allows DNS on UDP and TCP 53');
});

t.test('HERALD_REDIS_URL names the example Redis Service, which selects the single Redis pod', async (t) => {
  const url = new URL(configMap().data?.['HERALD_REDIS_URL'] ?? 'redis://missing');
  t.equal(url.protocol, 'redis:');
  const inRedis = (d: Doc): boolean => d.file.startsWith('redis/');
  const svc = one(Service.is, url.hostname, inRedis);
  t.ok(
    svc.spec?.ports?.some((p) => p.port === Number(url.port || 6379)),
    "the Service serves the URL's port",
  );
  const sts = one(StatefulSet.is, 'redis', inRedis) as IStatefulSet;
  t.equal(sts.spec?.replicas, 1);
  t.equal(sts.spec?.serviceName, url.hostname);
  t.ok(selects(svc.spec?.selector, sts.spec?.template.metadata?.labels), 'the Service selects the Redis pod');
});

t.test('the Ingress example routes the WebSocket path to the Service with 3600 s proxy timeouts', async (t) => {
  const ing = one(Ingress.is, 'herald', (d) => d.file === 'ingress.example.yaml') as IIngress;
  const annotations = ing.metadata?.annotations ?? {};
  t.equal(annotations['nginx.ingress.kubernetes.io/proxy-read-timeout'], '3600');
  t.equal(annotations['nginx.ingress.kubernetes.io/proxy-send-timeout'], '3600');
  t.equal(annotations['nginx.ingress.kubernetes.io/proxy-http-version'], '1.1');
  const paths = (ing.spec?.rules ?? []).flatMap((r) => r.http?.paths ?? []);
  const wsPath = configMap().data?.['HERALD_WS_PATH'] ?? '/ws'; // README default
  const ws = paths.find((p) => p.path === wsPath);
  t.ok(ws !== undefined, `a rule for ${wsPath}`);
  t.equal(ws?.backend.service?.name, service().metadata?.name);
  const port = ws?.backend.service?.port;
  t.ok(
    (service().spec?.ports ?? []).some((p) => p.name === port?.name || p.port === port?.number),
    'the backend port is a Service port',
  );
});

t.test('the Dockerfile builds the image the Deployment runs, as its user and on its port', async (t) => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  t.equal(herald().image, `herald:${version}`, 'image tag is the package version');
  const froms = [...dockerfile.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]);
  t.ok(froms.length >= 2 && froms.every((f) => f?.startsWith('node:20-bookworm')), `glibc (bookworm) Node 20 stages: ${froms.join(', ')}`);
  t.match(
    dockerfile,
    new RegExp(`^USER ${String(herald().securityContext?.runAsUser ?? podSpec().securityContext?.runAsUser)}$`, 'm'),
    'USER matches runAsUser',
  );
  t.match(dockerfile, new RegExp(`^EXPOSE ${httpPort()}$`, 'm'), 'EXPOSE matches the container port');
  t.match(dockerfile, /^CMD \["node", ?"dist\/main\.js"\]$/m, 'runs node dist/main.js');
  t.match(dockerfile, /untested by build/i, 'says it is untested by build');
});
