// soldout.js: the crowd that keeps clicking after the sale sold out. The
// item has no stock (or ITEM_ID names one already sold out). The crowd holds
// purchase tokens it got before the sell-out: setup() signs POOL of them
// (default 500) with SECKILL_PURCHASE_KEY, as the service did before the
// sell-out, and every iteration clicks with one. The first click that
// walks every shard sets the instance's sold-out flag; after that every
// purchase must be a fast 409 sold_out that does not touch Redis. (A fresh
// token is what re-teaches the flag after the instance forgets it, as it
// does every 30s: a made-up key would be a 403 instead.)
//
//   k6 run -e BASE_URL=... -e SECKILL_PURCHASE_KEY=... -e RATE=3000 -e DURATION=15s bench/k6/soldout.js
import exec from 'k6/execution';
import { check } from 'k6';
import {
  env, arrivalScenario, summaryTrendStats, setupRun, signJWT, signPurchaseToken, purchase, countOutcome, summary,
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

const poolSize = parseInt(__ENV.POOL || '500', 10);

export function setup() {
  const data = setupRun('k6 sold out', { stock: 0, shards: 8, per_user_limit: 1 });
  data.pool = [];
  for (let i = 1; i <= poolSize; i++) {
    const user = data.idBase + i;
    // Signed here: the crowd of a sold-out item holds tokens from before
    // it sold out, and the service issues none for an item it knows sold out.
    data.pool.push({ user: user, token: signPurchaseToken(data.itemID, user) });
  }
  // One real attempt walks every shard, finds them empty and sets the
  // instance's sold-out flag (behind a load balancer, each instance learns
  // it from its own first attempt).
  const first = data.pool[0];
  const r = purchase(data.itemID, signJWT(first.user), first.token, { phase: 'setup' });
  if (r.code !== 'sold_out') {
    throw new Error(`priming purchase: got status ${r.status} code ${r.code}, want 409 sold_out`);
  }
  return data;
}

const jwts = {}; // per VU: user -> signed JWT

export default function (data) {
  const p = data.pool[exec.scenario.iterationInTest % data.pool.length];
  jwts[p.user] = jwts[p.user] || signJWT(p.user);
  const r = purchase(data.itemID, jwts[p.user], p.token);
  countOutcome(r);
  check(r, { 'sold out answered 409 sold_out': (x) => x.code === 'sold_out' });
}

export function handleSummary(data) {
  return summary('soldout', data);
}
