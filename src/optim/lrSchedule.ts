/**
 * The learning rate over training: constant (the seed's recipe), or a linear warm-up followed by a
 * half-cosine decay to zero at the last step of the run (Loshchilov & Hutter's SGDR without restarts).
 */
export interface LrSchedule {
  kind: 'constant' | 'cosine';
  /** Updates over which the rate rises linearly from 0 to its peak. */
  warmupSteps: number;
  /** Updates in the whole run (epochs × batches per epoch; 0 = unknown); the cosine reaches 0 here. */
  totalSteps: number;
}

export const LR_SCHEDULES = ['constant', 'cosine'] as const;

/** The rate for update number `step` (1-based) given the peak rate. */
export function learningRateAt(peak: number, schedule: LrSchedule | undefined, step: number): number {
  if (!schedule) return peak;
  const warmup = effectiveWarmup(schedule);
  if (step <= warmup) return (peak * step) / warmup;
  if (schedule.kind === 'constant' || schedule.totalSteps <= 0) return peak;
  const decaySteps = Math.max(1, schedule.totalSteps - warmup);
  const progress = Math.min(1, (step - warmup) / decaySteps);
  return 0.5 * peak * (1 + Math.cos(Math.PI * progress));
}

/** Warm-up takes at most a tenth of a run of known length, so short runs still reach their peak rate. */
export function effectiveWarmup(schedule: LrSchedule): number {
  return schedule.totalSteps > 0 ? Math.min(schedule.warmupSteps, Math.floor(schedule.totalSteps / 10)) : schedule.warmupSteps;
}
