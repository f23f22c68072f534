// A handle on one topic the app asked for (client.subscribe(topic)), or the gateway
// subscribed the connection to (`serverSubscribed`): its own state, its own events,
// and a promise that settles when the server first confirmed it. The client drives it
// (it owns the socket and the retries); the handle only records and tells. One live
// handle per topic: subscribing again returns it.
import { Emitter } from './emitter.js';
import type { Notification } from './protocol.js';
import { HeraldError } from './requests.js';

export type SubscriptionState =
  /** Asked for, not confirmed on the current connection (also while offline, and between retries). */
  | 'subscribing'
  /** The server confirmed it on the current connection. */
  | 'subscribed'
  /**
   * No more events: unsubscribe() was called, the gateway unsubscribed the connection
   * (`serverUnsubscribed`), or the connection a gateway's subscription belonged to ended.
   */
  | 'unsubscribed'
  /** The server refused it for good (forbidden, too_many_topics, ...): no more retries. */
  | 'failed';

/** A topic's answer after a resume (the flat `recovery` event, for this topic). */
export interface TopicRecovery {
  topic: string;
  recovered: boolean;
}

export interface SubscriptionEvents {
  notification: Notification;
  /** After a resume of this topic: true when every missed notification was delivered before it. */
  recovered: TopicRecovery;
  /** Every failed (re-)subscribe: retried with backoff unless `state` became `failed`. */
  error: HeraldError;
  state: SubscriptionState;
}

/** What the client lets a handle ask of it. */
export interface SubscriptionOwner {
  unsubscribe(topic: string): Promise<void>;
}

export class Subscription extends Emitter<SubscriptionEvents> {
  readonly topic: string;
  /**
   * Settles once: resolves when the server first confirmed the topic; rejects with the
   * HeraldError of a refusal (`forbidden`, `too_many_topics`, `invalid_argument`,
   * `closed`, `unsubscribed`). Errors worth retrying (`rate_limited`, `unavailable`, a
   * timeout) do not reject it: the client retries, and `error` events tell.
   */
  readonly ready: Promise<void>;
  #state: SubscriptionState = 'subscribing';
  #settled = false;
  #resolve!: () => void;
  #reject!: (err: HeraldError) => void;
  readonly #owner: SubscriptionOwner;

  constructor(topic: string, owner: SubscriptionOwner) {
    super();
    this.topic = topic;
    this.#owner = owner;
    this.ready = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // An app that never awaits `ready` must not get an unhandled rejection; one that does still sees it.
    this.ready.catch(() => undefined);
  }

  get state(): SubscriptionState {
    return this.#state;
  }

  /** True while the client still wants the topic (not unsubscribed, not refused). */
  get live(): boolean {
    return this.#state === 'subscribing' || this.#state === 'subscribed';
  }

  /** Stops the topic: no more re-subscribes or events; resolves with the server's reply. */
  unsubscribe(): Promise<void> {
    return this.#owner.unsubscribe(this.topic);
  }

  // ---- driven by the client ----

  /** @internal */
  _confirmed(): void {
    if (!this.live) return;
    this.#set('subscribed');
    this.#settle();
  }

  /** @internal The connection went: it will be subscribed again on the next one. */
  _pending(): void {
    if (this.#state === 'subscribed') this.#set('subscribing');
  }

  /** @internal A failed attempt; `final` when the topic is dropped for good. */
  _failed(err: HeraldError, final: boolean): void {
    if (!this.live) return;
    if (final) {
      this.#set('failed');
      this.#settle(err);
    }
    this.emit('error', err);
  }

  /** @internal A `ready` that can no longer wait (the client closed): rejected, the state unchanged. */
  _abandon(err: HeraldError): void {
    this.#settle(err);
  }

  /** @internal `err`: what `ready` rejects with if still waiting. */
  _unsubscribed(err?: HeraldError): void {
    if (!this.live) return;
    this.#set('unsubscribed');
    this.#settle(
      err ?? new HeraldError('unsubscribed', `subscribe ${this.topic}: unsubscribed before the server confirmed it`, { topic: this.topic }),
    );
  }

  /** @internal */
  _notify(n: Notification): void {
    if (this.live) this.emit('notification', n);
  }

  /** @internal */
  _recovered(r: TopicRecovery): void {
    if (this.live) this.emit('recovered', r);
  }

  #set(state: SubscriptionState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.emit('state', state);
  }

  #settle(err?: HeraldError): void {
    if (this.#settled) return;
    this.#settled = true;
    if (err === undefined) this.#resolve();
    else this.#reject(err);
  }
}
