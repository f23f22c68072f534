// Interest routing, accounted per step: what Redis sent each gateway against what it
// delivered, and Herald's counts against redis-server's own. Pure: counter readings
// in, rows and checks out.
import type { Counters } from './counters.js';

/** One gateway during one step (counter deltas). */
export interface GatewayRouting {
  gateway: number;
  /** Held a recorder slot at the end of the step. */
  recorder: boolean;
  /** Channels held at the end of the step (its users' topics and `system`). */
  subscriptions: number;
  /** Messages Redis routed to its interest subscriptions (source="topic"). */
  routed: number;
  /** Its deliveries: notifications handed to uWS (one recipient each when targeted). */
  deliveries: number;
  /** routed ÷ deliveries; NaN when it delivered nothing. */
  routedPerDelivery: number;
  /** Recorder traffic: messages of its pattern subscription (source="pattern"). */
  pattern: number;
  recorded: number;
  found: number;
  dropped: number;
  /** Sum of the PUBLISH replies of its announcements: subscriptions redis-server reached. */
  announcementsDelivered: number;
}

/** Herald's count against redis-server's count of the same thing. */
export interface CountCheck {
  what: string;
  herald: number;
  redis: number;
  equal: boolean;
}

export interface StepRouting {
  gateways: GatewayRouting[];
  checks: CountCheck[];
  /** Every gateway's routed messages ≤ ROUTED_PER_DELIVERY_MAX × its deliveries + the step's `system` messages. */
  ratioOk: boolean;
}

/** Interest routing's target: a gateway receives little more than what it delivers. */
export const ROUTED_PER_DELIVERY_MAX = 1.1;

export function accountStep(
  before: Counters[],
  after: Counters[],
  step: { history: boolean; publishReplies: number; systemMessages: number },
): StepRouting {
  const gateways = after.map((a, i): GatewayRouting => {
    const b = before[i] as Counters;
    const routed = a.topic - b.topic;
    const deliveries = a.published - b.published;
    return {
      gateway: i,
      recorder: a.recorder === 1,
      subscriptions: a.subscriptions,
      routed,
      deliveries,
      routedPerDelivery: deliveries > 0 ? routed / deliveries : NaN,
      pattern: a.pattern - b.pattern,
      recorded: a.recorded - b.recorded,
      found: a.found - b.found,
      dropped: a.dropped - b.dropped,
      announcementsDelivered: a.announcements - b.announcements,
    };
  });
  const sum = (k: keyof GatewayRouting): number => gateways.reduce((s, g) => s + Number(g[k]), 0);
  const check = (what: string, herald: number, redis: number): CountCheck => ({ what, herald, redis, equal: herald === redis });
  // History off: the gateways SUBSCRIBE the publish channels, so the PUBLISH replies count
  // exactly their routed messages. On: the PUBLISHes reach the recorders' pattern, and
  // the announcements (PUBLISHes inside herald_record) reach the gateways' subscriptions.
  const checks = step.history
    ? [
        check('routed (topic) = announcements delivered', sum('routed'), sum('announcementsDelivered')),
        check("recorder (pattern) = publishing script's PUBLISH replies", sum('pattern'), step.publishReplies),
      ]
    : [check("routed (topic) = publishing script's PUBLISH replies", sum('routed'), step.publishReplies)];
  // `system` is held by every gateway whatever its connections, so its messages are
  // allowed on top (none in a targeted step).
  const ratioOk = gateways.every((g) => g.routed <= ROUTED_PER_DELIVERY_MAX * g.deliveries + step.systemMessages);
  return { gateways, checks, ratioOk };
}
