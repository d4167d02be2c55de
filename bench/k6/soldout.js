// soldout.js: the crowd that keeps clicking after the sale sold out. The
// item has no stock (or ITEM_ID names one already sold out); setup() makes
// one real purchase so the instance learns it is sold out, after which every
// purchase must be a fast 409 sold_out that does not touch Redis.
//
//   k6 run -e BASE_URL=... -e RATE=3000 -e DURATION=15s bench/k6/soldout.js
import exec from 'k6/execution';
import { check } from 'k6';
import {
  env, metrics, arrivalScenario, summaryTrendStats, setupRun, signJWT, issueToken, purchase, countOutcome, summary,
} from './lib.js';

export const options = {
  scenarios: { soldout: arrivalScenario(env.rate, env.duration) },
  thresholds: {
    purchase_duration: [`p(99)<${env.p99ms}`],
    errors: ['rate<0.01'],
    // A 202 here is a unit sold from an empty item: an oversell.
    accepted: ['count<1'],
  },
  summaryTrendStats: summaryTrendStats,
  setupTimeout: '30s',
};

export function setup() {
  const data = setupRun('k6 sold out', { stock: 0, shards: 8, per_user_limit: 1 });
  // One real attempt walks every shard, finds them empty and sets the
  // instance's sold-out flag (behind a load balancer, each instance learns
  // it from its own first attempt).
  const jwt = signJWT(data.idBase);
  const token = issueToken(data.itemID, jwt);
  const r = purchase(data.itemID, jwt, token || 'none', { phase: 'setup' });
  if (r.code !== 'sold_out') {
    throw new Error(`priming purchase: got status ${r.status} code ${r.code}, want 409 sold_out`);
  }
  return data;
}

export default function (data) {
  // A fresh user with a key of their own; the key is not checked once the
  // item is known sold out, so no token round trip is needed.
  const user = data.idBase + exec.scenario.iterationInTest + 1;
  const r = purchase(data.itemID, signJWT(user), `k6-${user}`);
  countOutcome(r);
  check(r, { 'sold out answered 409 sold_out': (x) => x.code === 'sold_out' });
}

export function handleSummary(data) {
  return summary('soldout', data);
}
