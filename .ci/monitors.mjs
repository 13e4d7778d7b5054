// The Prometheus Operator resources under deploy/kubernetes/ (PodMonitor, ServiceMonitor)
// against the operator's CRD schemas (the @kubernetes-models/prometheus-operator package,
// installed by .ci/ops), and wired to what they select: the ServiceMonitor's Service, the
// Service's pods (the Deployments' sidecar label), the port names. Run from the directory the
// package is installed in, with the repo root as the only argument.
import fs from 'fs';
import path from 'path';
import * as yaml from 'js-yaml';
import { PodMonitor, ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';

const root = process.argv[2];
const dir = path.join(root, 'deploy/kubernetes');
const docs = fs.readdirSync(dir).filter((f) => f.endsWith('.yaml')).flatMap((f) =>
  yaml.loadAll(fs.readFileSync(path.join(dir, f), 'utf8')).filter(Boolean).map((doc) => ({ f, doc })));
const problems = [];
const models = { PodMonitor, ServiceMonitor };
const seen = new Set();
for (const { f, doc } of docs.filter(({ doc }) => doc.apiVersion === 'monitoring.coreos.com/v1')) {
  const Model = models[doc.kind];
  if (!Model) { problems.push(`${f}: no schema checked for ${doc.kind}`); continue; }
  try { new Model(doc).validate(); seen.add(doc.kind); console.log(`ok   ${f} ${doc.kind}/${doc.metadata.name}`); }
  catch (e) { problems.push(`${f} ${doc.kind}: ${e.message.split('\n')[0]}`); }
}
for (const kind of Object.keys(models)) if (!seen.has(kind)) problems.push(`no valid ${kind} under deploy/kubernetes`);

// Wiring: labels and port names the selectors rely on.
const matches = (selector, labels) => Object.entries(selector || {}).every(([k, v]) => (labels || {})[k] === v);
const pods = docs.filter(({ doc }) => doc.kind === 'Deployment').map(({ doc }) => doc.spec.template);
const sidecarPorts = (pod) => [...(pod.spec.initContainers || []), ...(pod.spec.containers || [])]
  .flatMap((c) => (c.ports || []).map((p) => p.name));
for (const { f, doc } of docs.filter(({ doc }) => doc.kind === 'PodMonitor')) {
  const selected = pods.filter((pod) => matches(doc.spec.selector.matchLabels, pod.metadata.labels));
  if (!selected.length) problems.push(`${f}: the PodMonitor selects no Deployment's pods`);
  for (const e of doc.spec.podMetricsEndpoints) for (const pod of selected)
    if (!sidecarPorts(pod).includes(e.port)) problems.push(`${f}: no container port named ${e.port}`);
}
for (const { f, doc } of docs.filter(({ doc }) => doc.kind === 'ServiceMonitor')) {
  const services = docs.filter(({ doc: s }) => s.kind === 'Service' && matches(doc.spec.selector.matchLabels, s.metadata.labels));
  if (!services.length) problems.push(`${f}: the ServiceMonitor selects no Service`);
  for (const { doc: service } of services) {
    const selected = pods.filter((pod) => matches(service.spec.selector, pod.metadata.labels));
    if (!selected.length) problems.push(`${f}: Service ${service.metadata.name} selects no Deployment's pods`);
    for (const e of doc.spec.endpoints)
      if (!service.spec.ports.some((p) => p.name === e.port)) problems.push(`${f}: Service has no port named ${e.port}`);
    for (const p of service.spec.ports) for (const pod of selected)
      if (!sidecarPorts(pod).includes(p.targetPort)) problems.push(`${f}: no container port named ${p.targetPort}`);
  }
}
for (const p of problems) console.error(`FAIL ${p}`);
process.exit(problems.length ? 1 : 0);
