/**
 * The approvals processor: expiry on time, approvers told once, stale holds cancelled when a
 * gateway restarts. It drives an ApprovalService (which keeps the book in step with the evidence
 * log and records every action as evidence first, control message second).
 *
 *   expiry     one timer armed at the book's next due time (never a polling tick); re-armed whenever
 *              an approval changes (new, approved, closed); when it fires, `expireDue`. If something
 *              is still due afterwards (its evidence could not be written), the next try is `tickMs`
 *              later, not at once.
 *   notify     approval.requested → the webhook notifier, once per approval. The processor reads the
 *   restarts   evidence log with a consumer group of its own (`group`, stable across restarts and
 *              shared by the processor's instances) and commits after handling each batch, so:
 *              - across restarts, an approval is notified once, except when the process dies
 *                between a delivery and the next commit (then it is notified again: at least once);
 *              - an approval already closed, or past its expiry, when its request is read is not
 *                notified (a first start on an old log does not page anyone for history);
 *              - with several processor instances in one group, each record goes to one of them.
 *              audit.started of a gateway (component 'gateway'): cancels that gateway's open
 *              hold-mode approvals of earlier runs (reason gateway_restarted). Only approvals
 *              requested before the new run started are cancelled, so a re-delivered start of an old
 *              run never cancels a newer run's holds. The service catches up with the log first, so
 *              the holds of the old run are in its book.
 *
 * Several instances each run the timer: an approval may then be expired twice (two evidence events,
 * the second ignored by every book and every gateway). Give one instance the timer (`expiry: false`
 * elsewhere) when that matters.
 */
import type { Logger } from 'pino';
import { evolve, fromEvidence, isOpen, type ApprovalState } from '../../../common/src/approvals';
import type { ApprovalService } from '../../../common/src/approvals/service';
import { decodeEvent, type AnyAttestEvent, type AttestEvent } from '../../../common/src/events';
import { positionsAfter, type ConsumedRecord, type LogConsumer } from '../../../common/src/log';
import { noticeFromState, type ApprovalNotice, type NotifyResult } from './notifier';

export interface ApprovalsProcessorOptions {
  readonly service: ApprovalService;
  /** Sends the notices; without it nothing is notified (the console still lists the approvals). */
  readonly notifier?: { notify(notice: ApprovalNotice): Promise<NotifyResult | unknown> };
  readonly logger: Logger;
  /** Least delay between two expiry runs while something stays due (e.g. evidence unavailable). Default 1000. */
  readonly tickMs?: number;
  /** Consumer group for notifications and gateway starts; stable across restarts. Default 'approvals-processor'. */
  readonly group?: string;
  /** Run the expiry timer. Default true. */
  readonly expiry?: boolean;
  /** Longest a poll waits; bounds how fast stop() returns. Default 500 ms. */
  readonly pollWaitMs?: number;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

export class ApprovalsProcessor {
  private timer: NodeJS.Timeout | undefined;
  private armedFor: number | undefined;
  private expiring: Promise<void> | undefined;
  private consumer: LogConsumer | undefined;
  private loop: Promise<void> | undefined;
  private unsubscribe: (() => void) | undefined;
  private stopped = false;
  /** Notified in this run (a batch re-delivered after a failed commit is not notified twice). */
  private readonly notified = new Set<string>();
  readonly counts = { expiryRuns: 0, expired: 0, notified: 0, holdsCancelled: 0 };

  private constructor(private readonly opts: ApprovalsProcessorOptions) {}

  static async start(opts: ApprovalsProcessorOptions): Promise<ApprovalsProcessor> {
    const p = new ApprovalsProcessor(opts);
    if (opts.expiry !== false) {
      p.unsubscribe = opts.service.subscribe({ changed: () => p.arm() });
      p.arm();
    }
    p.consumer = await opts.service.log.consumer(opts.group ?? 'approvals-processor', { startFrom: 'earliest' });
    p.loop = p.run();
    return p;
  }

  // ---------------------------------------------------------------------------------------------
  // Expiry

  /** Arms the timer for the book's next due time (no-op when already armed for it). */
  private arm(minDelayMs = 0): void {
    if (this.stopped || this.expiring !== undefined) return;
    const next = this.opts.service.nextExpiry();
    if (next === undefined) {
      this.disarm();
      return;
    }
    // 1 ms past due: a timer can fire a hair early against the wall clock the book compares with.
    const delay = Math.min(MAX_TIMER_MS, Math.max(minDelayMs, next - this.opts.service.nowMs() + 1));
    if (this.timer !== undefined && this.armedFor === next && minDelayMs === 0) return;
    this.disarm();
    this.armedFor = next;
    this.timer = setTimeout(() => void this.fire(), delay);
  }

  private disarm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.armedFor = undefined;
  }

  private async fire(): Promise<void> {
    this.timer = undefined;
    this.armedFor = undefined;
    const run = (async () => {
      this.counts.expiryRuns++;
      try {
        const events = await this.opts.service.expireDue();
        this.counts.expired += events.length;
      } catch (err) {
        this.opts.logger.error({ err: (err as Error).message }, 'approvals processor: expiry run failed');
      }
    })();
    this.expiring = run;
    await run;
    this.expiring = undefined;
    const next = this.opts.service.nextExpiry();
    // Still due right after a run: its evidence could not be written; try again later, not at once.
    const stillDue = next !== undefined && next <= this.opts.service.nowMs();
    this.arm(stillDue ? (this.opts.tickMs ?? 1000) : 0);
  }

  // ---------------------------------------------------------------------------------------------
  // Notifications and gateway restarts

  private async run(): Promise<void> {
    const wait = this.opts.pollWaitMs ?? 500;
    while (!this.stopped) {
      let batch: ConsumedRecord[];
      try {
        batch = await this.consumer!.poll(200, wait);
      } catch (err) {
        if (this.stopped) return;
        this.opts.logger.error({ code: (err as { code?: string }).code }, 'approvals processor: poll failed; retrying');
        await new Promise((r) => setTimeout(r, wait));
        continue;
      }
      if (batch.length === 0) continue;
      const work: Promise<unknown>[] = [];
      for (const r of batch) {
        const type = r.headers['type'];
        if (type !== undefined && type !== 'approval.requested' && type !== 'audit.started') continue;
        let event: AnyAttestEvent;
        try {
          event = decodeEvent(r.value).event as AnyAttestEvent;
        } catch {
          continue; // the service logs undecodable records
        }
        if (event.metadata.type === 'approval.requested') work.push(this.requested(event));
        else if (event.metadata.type === 'audit.started') await this.auditStarted(event as AttestEvent<'audit.started'>);
      }
      await Promise.allSettled(work);
      if (this.stopped) return;
      try {
        await this.consumer!.commit(positionsAfter(batch));
      } catch (err) {
        this.opts.logger.warn({ code: (err as { code?: string }).code }, 'approvals processor: commit failed; the batch may be handled again');
      }
    }
  }

  private async requested(event: AnyAttestEvent): Promise<void> {
    const domain = fromEvidence(event);
    if (domain?.type !== 'requested' || this.notified.has(domain.approvalId)) return;
    const known = this.opts.service.get(domain.approvalId);
    if (known !== undefined && !isOpen(known)) return;
    if (domain.expiresAtMs <= this.opts.service.nowMs()) return;
    this.notified.add(domain.approvalId);
    // The state as of the request (the service's book may not have folded it yet).
    const state: ApprovalState | undefined = known ?? evolve(undefined, domain);
    if (state === undefined) return;
    if (this.opts.notifier === undefined) return;
    try {
      await this.opts.notifier.notify(noticeFromState(state));
      this.counts.notified++;
    } catch (err) {
      this.opts.logger.warn({ approvalId: domain.approvalId, err: (err as Error).message }, 'approvals processor: notification failed');
    }
  }

  private async auditStarted(event: AttestEvent<'audit.started'>): Promise<void> {
    if (event.payload.component !== 'gateway') return;
    const gatewayId = event.metadata.producer;
    const epoch = event.metadata.producerEpoch;
    if (epoch === null) return;
    await this.opts.service.sync();
    const results = await this.opts.service.cancelStaleHolds(gatewayId, epoch, { requestedBeforeMs: event.metadata.timeUs / 1000 });
    const cancelled = results.filter((r) => r.ok).length;
    this.counts.holdsCancelled += cancelled;
    if (results.length > 0) {
      this.opts.logger.info({ gatewayId, epoch, cancelled, refused: results.length - cancelled }, 'approvals processor: holds of an earlier gateway run cancelled');
    }
  }

  /** Stops the timer and the consumer (without committing what was not handled). Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.unsubscribe?.();
    this.disarm();
    await this.consumer?.close();
    await this.loop;
    await this.expiring;
  }
}
