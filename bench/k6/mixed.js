// mixed.js: how real clients misbehave. Each iteration is a buyer who
//   1. double-clicks: two concurrent purchases with the same Idempotency-Key,
//   2. clicks again later (a retry after a lost answer),
//   3. retries on 409 purchase_in_progress / 503 after Retry-After,
// and a second user who replays the buyer's key, which must be refused with
// 403 token_invalid. Every answer for one key must carry the same order_id.
//
//   k6 run -e BASE_URL=... -e RATE=500 -e DURATION=15s bench/k6/mixed.js
import exec from 'k6/execution';
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import {
  env, arrivalScenario, summaryTrendStats, setupRun, signJWT, issueToken, purchase, purchaseResult, countOutcome,
  summary,
} from './lib.js';

const mismatches = new Counter('idempotency_mismatch');
const replays = new Counter('replays');
const theftRefused = new Counter('foreign_key_refused');
const theftAccepted = new Counter('foreign_key_accepted');
const retries = new Counter('retries');

export const options = {
  scenarios: { mixed: arrivalScenario(env.rate, env.duration) },
  thresholds: {
    purchase_duration: [`p(99)<${env.p99ms}`],
    errors: ['rate<0.01'],
    idempotency_mismatch: ['count<1'],
    foreign_key_accepted: ['count<1'],
  },
  summaryTrendStats: summaryTrendStats,
  setupTimeout: '30s',
};

export function setup() {
  // Enough stock that the item never sells out: once sold out, a foreign
  // key gets 409 sold_out (no Redis call) instead of 403.
  const stock = __ENV.STOCK ? parseInt(__ENV.STOCK, 10) : env.rate * 120;
  return setupRun('k6 mixed clients', { stock: stock, shards: 8, per_user_limit: 1 });
}

const retryable = { purchase_in_progress: true, unavailable: true, overloaded: true, rate_limited: true };

// withRetry resends the same key while the answer says "retry shortly".
function withRetry(send) {
  let r = send();
  for (let i = 0; i < 3 && retryable[r.code]; i++) {
    retries.add(1);
    sleep(Math.min(parseFloat(r.res.headers['Retry-After'] || '1'), 1) / 10);
    r = send();
  }
  return r;
}

function batchPurchase(itemID, jwt, key) {
  const req = {
    method: 'POST',
    url: `${env.baseURL}/api/v1/items/${itemID}/purchase`,
    body: null,
    params: { headers: { Authorization: `Bearer ${jwt}`, 'Idempotency-Key': key }, tags: { name: 'purchase' } },
  };
  return http.batch([req, req]).map(purchaseResult);
}

// same reports whether two answers for one key agree.
function same(a, b) {
  return a.status === b.status && a.orderID === b.orderID && (a.status === 202 || a.code === b.code);
}

export default function (data) {
  const n = exec.scenario.iterationInTest;
  const buyer = data.idBase + 2 * n + 1;
  const other = buyer + 1;
  const jwt = signJWT(buyer);
  const key = issueToken(data.itemID, jwt);
  if (!key) {
    return;
  }

  // 1. Double click: both answers must be the same purchase.
  let [a, b] = batchPurchase(data.itemID, jwt, key);
  if (retryable[a.code]) {
    a = withRetry(() => purchase(data.itemID, jwt, key));
  }
  if (retryable[b.code]) {
    b = withRetry(() => purchase(data.itemID, jwt, key));
  }
  countOutcome(a);
  replays.add(1);
  if (!same(a, b)) {
    mismatches.add(1);
    console.warn(`double click: ${a.status} ${a.orderID || a.code} vs ${b.status} ${b.orderID || b.code}`);
  }

  // 2. A later retry of the same click.
  const c = withRetry(() => purchase(data.itemID, jwt, key));
  replays.add(1);
  if (!same(a, c)) {
    mismatches.add(1);
    console.warn(`retry: ${a.status} ${a.orderID || a.code} vs ${c.status} ${c.orderID || c.code}`);
  }

  // 3. Someone else's key: never a purchase.
  const t = purchase(data.itemID, signJWT(other), key, { phase: 'foreign_key' });
  if (t.status === 202) {
    theftAccepted.add(1);
  } else if (t.code === 'token_invalid') {
    theftRefused.add(1);
  }
  check(t, { "foreign key refused with 403 token_invalid": (x) => x.status === 403 && x.code === 'token_invalid' });
}

export function handleSummary(data) {
  return summary('mixed', data, {
    idempotency_mismatch: 'idempotency_mismatch',
    replays: 'replays',
    retries: 'retries',
    foreign_key_refused: 'foreign_key_refused',
    foreign_key_accepted: 'foreign_key_accepted',
  });
}
