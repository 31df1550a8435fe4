// Generates services/vocabulary/testdata/fsrs_crosscheck.json: random review
// histories scheduled by ts-fsrs@5.4.2, the reference implementation of FSRS-6,
// which the Go test TestFSRSCrossCheck replays through the vocabulary service's
// Scheduler (go-fsrs/v4 v4.0.0). Deterministic: a seeded PRNG drives everything,
// so running it twice writes the same file.
//
//   cd tools/fsrs-crosscheck && npm ci && node generate.mjs
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createEmptyCard, fsrs, generatorParameters } from 'ts-fsrs';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(here, '../../services/vocabulary/testdata/fsrs_crosscheck.json');

// Must match vocabulary.DefaultConfig() on the Go side (the test checks it).
const settings = {
  desired_retention: 0.9,
  learning_steps_minutes: [1, 10],
  relearning_steps_minutes: [10],
  maximum_interval_days: 36500,
};
const HISTORIES = Number(process.env.HISTORIES ?? 1200);
const SEED = Number(process.env.SEED ?? 20261130);

const f = fsrs(generatorParameters({
  request_retention: settings.desired_retention,
  maximum_interval: settings.maximum_interval_days,
  enable_fuzz: false,
  enable_short_term: true,
  learning_steps: settings.learning_steps_minutes.map((m) => `${m}m`),
  relearning_steps: settings.relearning_steps_minutes.map((m) => `${m}m`),
}));

// mulberry32: a small, well-known seeded PRNG.
function mulberry32(a) {
  return () => {
    a |= 0; a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rnd = mulberry32(SEED);
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1)); // inclusive
const MIN = 60_000, HOUR = 60 * MIN, DAY = 24 * HOUR;

// Ratings: mostly good, enough again/hard/easy to exercise every branch.
function rating() {
  const x = rnd();
  if (x < 0.2) return 1;
  if (x < 0.35) return 2;
  if (x < 0.85) return 3;
  return 4;
}

// The gap before the next review, relative to the previous review and the due date.
function nextTime(prev, due) {
  const x = rnd();
  if (x < 0.12) return prev + int(0, 59) * 1000 + int(0, 999); // seconds later: same day
  if (x < 0.25) return prev + int(1, 180) * MIN; // minutes to hours: usually the same day
  if (x < 0.35) { // just after the next UTC midnight
    const midnight = Math.floor(prev / DAY) * DAY + DAY;
    return midnight + int(0, 120) * MIN;
  }
  if (x < 0.65) return Math.max(prev, due + int(-2 * HOUR, 6 * HOUR)); // around the due date
  if (x < 0.85) return Math.max(prev, due + int(0, 30) * DAY + int(0, DAY - 1)); // late
  if (x < 0.95) return prev + int(30, 400) * DAY + int(0, DAY - 1); // a long gap
  return prev + int(400, 3000) * DAY + int(0, DAY - 1); // a very long gap
}

const histories = [];
let reviews = 0;
for (let h = 0; h < HISTORIES; h++) {
  // Start between 2024-01-01 and 2026-12-31 at any millisecond.
  const start = Date.UTC(2024, 0, 1) + Math.floor(rnd() * 3 * 365 * DAY);
  let card = createEmptyCard(new Date(start));
  let t = start + int(0, 3 * DAY);
  const n = int(1, 16);
  const steps = [];
  for (let i = 0; i < n; i++) {
    const r = rating();
    const { card: next, log } = f.next(card, new Date(t), r);
    // Keep the maximum interval unreachable: at the cap the libraries differ
    // (go-fsrs clamps the due date to the maximum, ts-fsrs lets the
    // hard < good < easy "+1 day" rule push it past), which is not what this
    // cross-check is about. A history ends before a review that would reach it.
    if (next.scheduled_days >= settings.maximum_interval_days) break;
    steps.push({
      at: t, rating: r,
      elapsed: log.elapsed_days,
      due: next.due.getTime(), state: next.state, scheduled: next.scheduled_days,
      reps: next.reps, lapses: next.lapses, step: next.learning_steps,
      s: next.stability, d: next.difficulty,
    });
    card = next;
    t = nextTime(t, next.due.getTime());
  }
  if (steps.length === 0) { h--; continue; }
  reviews += steps.length;
  histories.push({ start, reviews: steps });
}

const doc = {
  generator: 'ts-fsrs@5.4.2 via tools/fsrs-crosscheck/generate.mjs',
  seed: SEED,
  settings,
  histories,
};
mkdirSync(dirname(out), { recursive: true });
// One history per line keeps the file diffable without blowing up its size.
const body = JSON.stringify({ ...doc, histories: [] }).replace('"histories":[]', '"histories":[\n' +
  histories.map((x) => JSON.stringify(x)).join(',\n') + '\n]');
writeFileSync(out, body + '\n');
console.log(`wrote ${histories.length} histories, ${reviews} reviews to ${out}`);
