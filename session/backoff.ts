/**
 * Capped exponential backoff, pure: the caller owns the timer and supplies
 * the randomness. The n-th delay (from 0) has the ceiling
 * min(maxMs, baseMs * 2^n); `jitter` is the part of that ceiling drawn at
 * random, so the delay lies in [ceiling * (1 - jitter), ceiling].
 */

/** How a Backoff grows. */
export interface BackoffOptions {
  /** Ceiling of the first delay, in ms. */
  baseMs: number;
  /** Largest ceiling, in ms. */
  maxMs: number;
  /** Fraction of the ceiling drawn at random, 0..1 (default 0: every delay is its ceiling). */
  jitter?: number;
  /** Uniform in [0, 1) (default Math.random); tests pass a fixed one. */
  random?: () => number;
}

/** Delays for a run of failed attempts; reset() once one succeeds. */
export class Backoff {
  private failures = 0;
  private readonly jitter: number;
  private readonly random: () => number;

  constructor(private readonly opts: BackoffOptions) {
    if (!(opts.baseMs > 0) || !(opts.maxMs >= opts.baseMs)) throw new RangeError('backoff: need 0 < baseMs <= maxMs');
    this.jitter = opts.jitter ?? 0;
    if (!(this.jitter >= 0 && this.jitter <= 1)) throw new RangeError('backoff: jitter must be within 0..1');
    this.random = opts.random ?? Math.random;
  }

  /** Delays handed out since the last reset(). */
  get attempts(): number {
    return this.failures;
  }

  /** The delay before the next attempt, in whole ms; each call doubles the ceiling up to maxMs. */
  next(): number {
    // The exponent stops growing once the cap is reached, so a long outage cannot overflow it.
    const ceiling = Math.min(this.opts.maxMs, this.opts.baseMs * 2 ** Math.min(this.failures, 52));
    this.failures++;
    return Math.round(ceiling * (1 - this.jitter) + this.random() * ceiling * this.jitter);
  }

  /** Starts again from baseMs (an attempt succeeded). */
  reset(): void {
    this.failures = 0;
  }
}
