// purchase.js: the flash-sale spike. Every iteration is a new user who signs
// their own JWT, asks for a purchase token and buys once, at a constant
// arrival rate from the first second.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e RATE=2000 -e DURATION=20s \
//     -e SECKILL_JWT_SECRET=... -e SECKILL_ADMIN_TOKEN=... bench/k6/purchase.js
//
// Without ITEM_ID, setup() creates an item with STOCK units (default
// RATE*DURATION, so the whole test sells; set it lower to sell out mid-run).
import exec from 'k6/execution';
import { check } from 'k6';
import {
  env, arrivalScenario, summaryTrendStats, setupRun, signJWT, issueToken, purchase, countOutcome, summary,
} from './lib.js';

function seconds(d) {
  const m = /^(\d+)(ms|s|m)$/.exec(d);
  if (!m) {
    return 20;
  }
  return { ms: 0.001, s: 1, m: 60 }[m[2]] * parseInt(m[1], 10);
}

const stock = __ENV.STOCK ? parseInt(__ENV.STOCK, 10) : env.rate * seconds(env.duration);

export const options = {
  scenarios: { spike: arrivalScenario(env.rate, env.duration) },
  thresholds: {
    purchase_duration: [`p(99)<${env.p99ms}`],
    errors: ['rate<0.01'],
    // A purchase refused for any reason but sold out (limit, token,
    // rate limit) means the test or the limiter is mis-set.
    rejected: ['count<1'],
  },
  summaryTrendStats: summaryTrendStats,
  setupTimeout: '30s',
};

export function setup() {
  return setupRun('k6 purchase spike', { stock: stock, shards: 8, per_user_limit: 1 });
}

export default function (data) {
  const user = data.idBase + exec.scenario.iterationInTest + 1;
  const jwt = signJWT(user);
  const token = issueToken(data.itemID, jwt);
  if (!token) {
    return;
  }
  const r = purchase(data.itemID, jwt, token);
  countOutcome(r);
  check(r, { 'purchase answered 202 or 409 sold_out': (x) => x.status === 202 || x.code === 'sold_out' });
}

export function handleSummary(data) {
  return summary('purchase', data);
}
