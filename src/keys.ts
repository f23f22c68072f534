// The Redis names of one deployment. Everything Herald keeps or publishes in Redis is
// named after HERALD_NAMESPACE, so that deployments sharing a Redis server never reach
// each other's data. A topic's own keys and its internal channel carry the topic as a
// hash tag (`{user:42}`): in Redis Cluster they all land in the topic's slot, and a
// function touching them runs on one node. Pure.

export interface Names {
  readonly namespace: string;
  /** The stream holding the topic's history. */
  history(topic: string): string;
  /** Prefix of the topic's "seen" keys (dedup of recording across recorders). */
  seen(topic: string): string;
  /** Where recorded notifications of the topic are announced, with their positions. */
  notify(topic: string): string;
  /** notify(topic) -> topic; undefined for any other channel. */
  topicOfNotify(channel: string): string | undefined;
  /** The dataset's epoch (one per deployment). */
  readonly epoch: string;
  /** The lease of recorder slot `slot`. */
  recorder(slot: number): string;
  /** The function library's name and its functions' prefix (`herald_publish`, ...). */
  readonly library: string;
  /** Where control messages for one user go (control.ts); gateways holding the user subscribe. */
  control(userId: string): string;
  /** control(userId) -> userId; undefined for any other channel. */
  userOfControl(channel: string): string | undefined;
}

/** `head` + x + `}` -> x (nonempty); undefined otherwise. Names never contain braces. */
function tagged(head: string, channel: string): string | undefined {
  if (!channel.startsWith(head) || channel.charCodeAt(channel.length - 1) !== 125 /* } */) return undefined;
  const inner = channel.slice(head.length, -1);
  return inner === '' ? undefined : inner;
}

export function names(namespace: string): Names {
  const notifyHead = `${namespace}:notify:{`;
  const controlHead = `${namespace}:control:{user:`;
  return {
    namespace,
    history: (topic) => `${namespace}:history:{${topic}}`,
    seen: (topic) => `${namespace}:seen:{${topic}}`,
    notify: (topic) => `${notifyHead}${topic}}`,
    topicOfNotify: (channel) => tagged(notifyHead, channel),
    control: (userId) => `${controlHead}${userId}}`,
    userOfControl: (channel) => tagged(controlHead, channel),
    epoch: `${namespace}:epoch`,
    recorder: (slot) => `${namespace}:recorder:${slot}`,
    library: namespace,
  };
}
