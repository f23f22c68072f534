// The mapping between Redis channels, topics and token claims. Pure. The topic grammar
// itself is the SDK's (client/src/grammar.ts), so both sides accept the same names.
import { isTopic, isTopicPrefix } from '@herald/client/grammar';

export { isTopic, TOPIC_PATTERN } from '@herald/client/grammar';

/**
 * A `sub` or a role: 1-123 of [A-Za-z0-9_.@-], so `user:<sub>` and `role:<r>` are
 * valid topics. No `:`: with one, `sub` "alice:billing" would own `user:alice:billing`,
 * a topic that a `user:alice:*` grant hands to alice. Without `:` (and `*`, which the
 * grammar never allowed), each user and role topic has exactly two parts and no
 * grant written for one user's sub-topics reaches another user's.
 */
const NAME_RE = /^[A-Za-z0-9_.@-]{1,123}$/;

export function isValidName(name: string): boolean {
  return NAME_RE.test(name);
}

/** `notifications:user:42` -> `user:42`; undefined when the channel is not ours or the topic is invalid. */
export function channelToTopic(prefix: string, channel: string): string | undefined {
  if (channel.length <= prefix.length + 1 || !channel.startsWith(prefix) || channel.charCodeAt(prefix.length) !== 58 /* : */) {
    return undefined;
  }
  const topic = channel.slice(prefix.length + 1);
  return isTopic(topic) ? topic : undefined;
}

export function topicToChannel(prefix: string, topic: string): string {
  return `${prefix}:${topic}`;
}

/**
 * Topic grants from a token's `topics` claim: exact topics, or prefixes ending in `*`
 * (`feed:*` grants `feed:a` and `feed:a:b`; a lone `*` grants every topic).
 */
export interface Grants {
  exact: ReadonlySet<string>;
  prefixes: readonly string[];
}

export const NO_GRANTS: Grants = Object.freeze({ exact: new Set<string>(), prefixes: Object.freeze([]) });

/** Invalid entries make the whole claim invalid, so a typo in the issuer shows up at once. */
export function parseGrants(claim: readonly string[]): Grants | undefined {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const g of claim) {
    if (g === '*') {
      prefixes.push('');
    } else if (g.endsWith('*')) {
      const p = g.slice(0, -1);
      if (!isTopicPrefix(p)) return undefined;
      prefixes.push(p);
    } else {
      if (!isTopic(g)) return undefined;
      exact.add(g);
    }
  }
  return { exact, prefixes };
}

export function isGranted(grants: Grants, topic: string): boolean {
  if (grants.exact.has(topic)) return true;
  for (const p of grants.prefixes) if (topic.startsWith(p)) return true;
  return false;
}

/** Whether `topic` is one of initialTopics(userId, roles), without building the list. */
export function isBaseTopic(identity: { userId: string; roles: readonly string[] }, topic: string): boolean {
  if (topic === 'system' || topic === `user:${identity.userId}`) return true;
  return topic.startsWith('role:') && identity.roles.includes(topic.slice(5));
}

/** The topics every connection starts with: `user:<sub>`, `role:<r>` per role, and `system`. */
export function initialTopics(userId: string, roles: readonly string[]): string[] {
  const topics = [`user:${userId}`];
  for (const r of roles) topics.push(`role:${r}`);
  topics.push('system');
  return [...new Set(topics)];
}
