// wholesale.js: a whole flash sale. UNITS units, BUYERS buyers (default
// 100 per unit) arriving in a burst of BURST_S seconds; each loads the
// product page, asks for a purchase token and purchases with it, retrying
// with the same token after Retry-After; a winner polls its order until
// MySQL holds it, then pays (the buyer's pay button: start compose with
// SECKILL_PAYMENTS_DEMO_PAY=true, else every winner's payment is counted
// failed). The same scenario as bench/cmd/wholesale in `make bench`; this
// one is for firing at a deployment (compose):
//
//   K6_WEB_DASHBOARD=true K6_WEB_DASHBOARD_PERIOD=1s K6_WEB_DASHBOARD_EXPORT=wholesale.html \
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e UNITS=100 -e BUYERS=10000 \
//     -e SECKILL_JWT_SECRET=... -e SECKILL_ADMIN_TOKEN=... bench/k6/wholesale.js
//
// k6 runs JavaScript per request: on 2 cores it makes ~2.5k requests/s, so
// 100,000 buyers take minutes here; VUS (default 500) bounds the buyers in
// flight. Without ITEM_ID, setup() creates the item with UNITS units.
// Reported (handleSummary): time to every buyer's final answer, p50/p99 of a
// buyer's time to its answer, requests per buyer, and the share of winners
// in each tenth of the arrivals (fairness). The web dashboard's HTML report
// (K6_WEB_DASHBOARD_EXPORT) shows QPS and latency over time; k6 skips it
// for a run shorter than a few of its periods (K6_WEB_DASHBOARD_PERIOD,
// 10s by default).
import http from 'k6/http';
import exec from 'k6/execution';
import { sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { env, metrics, setupRun, signJWT, problemCode, summaryTrendStats } from './lib.js';

const units = parseInt(__ENV.UNITS || '1000', 10);
const buyers = parseInt(__ENV.BUYERS || String(100 * units), 10);
const burstMs = 1000 * parseFloat(__ENV.BURST_S || '1');
const vus = Math.min(parseInt(__ENV.VUS || '500', 10), buyers);
const pollMs = parseInt(__ENV.POLL_MS || '200', 10);
const maxAttempts = parseInt(__ENV.MAX_ATTEMPTS || '100', 10);

const answerTime = new Trend('answer_duration', true); // arrival -> final answer
const paidTime = new Trend('paid_duration', true); // a winner's arrival -> paid
const paid = new Counter('paid');
const failed = new Counter('failed_buyers'); // no final answer, or a payment that failed
const last = new Trend('answered_at', false); // ms after the first arrival: max = every buyer answered
const wonByDecile = [];
for (let d = 0; d < 10; d++) {
  wonByDecile.push(new Counter(`won_d${d}`));
}

export const options = {
  scenarios: {
    sale: { executor: 'shared-iterations', vus: vus, iterations: buyers, maxDuration: __ENV.MAX_DURATION || '30m' },
  },
  thresholds: {
    failed_buyers: ['count<1'],
    errors: ['rate<0.01'],
  },
  summaryTrendStats: summaryTrendStats,
  setupTimeout: '60s',
};

export function setup() {
  const d = setupRun('k6 whole sale', { stock: units, shards: 8, per_user_limit: 1 });
  // The burst opens shortly after setup, once every VU is running.
  d.start = Date.now() + 500;
  return d;
}

function retryAfterMs(res) {
  const n = parseInt(res.headers['Retry-After'] || '0', 10);
  return n > 0 ? n * 1000 : 50;
}

// call sends one request of a step, again after Retry-After while the
// answer is 429, 503 or an in-progress 409; it returns the last answer, or
// null when out of attempts.
function call(method, url, params) {
  for (let i = 0; i < maxAttempts; i++) {
    const res = http.request(method, url, null, params);
    metrics.errors.add(res.status === 0 || res.status >= 500);
    const code = problemCode(res);
    if (res.status === 0) {
      sleep(0.1);
      continue;
    }
    if (res.status === 429 || res.status === 503 ||
        (res.status === 409 && (code === 'purchase_in_progress' || code === 'order_pending'))) {
      sleep(retryAfterMs(res) / 1000);
      continue;
    }
    return { res: res, code: code };
  }
  return null;
}

export default function (data) {
  const i = exec.scenario.iterationInTest;
  const arrival = data.start + (burstMs * i) / buyers;
  const wait = arrival - Date.now();
  if (wait > 0) {
    sleep(wait / 1000);
  }
  const user = data.idBase + i + 1;
  const auth = { Authorization: `Bearer ${signJWT(user)}` };
  const item = `${env.baseURL}/api/v1/items/${data.itemID}`;
  const answered = (won) => {
    const now = Date.now();
    answerTime.add(now - arrival);
    last.add(now - data.start);
    if (won) {
      metrics.accepted.add(1);
      wonByDecile[Math.floor((i * 10) / buyers)].add(1);
    }
  };

  if (!call('GET', item, { tags: { name: 'page' } })) {
    failed.add(1);
    return;
  }
  const t = call('POST', `${item}/tokens`, { headers: auth, tags: { name: 'tokens' } });
  if (!t || t.res.status !== 201) {
    if (t && t.res.status === 409 && t.code === 'sold_out') {
      metrics.soldOut.add(1);
      answered(false);
    } else {
      failed.add(1);
    }
    return;
  }
  const p = call('POST', `${item}/purchase`, {
    headers: Object.assign({ 'Idempotency-Key': t.res.json('token') }, auth), tags: { name: 'purchase' },
  });
  if (!p || p.res.status !== 202) {
    if (p && p.res.status === 409 && (p.code === 'sold_out' || p.code === 'purchase_limit')) {
      metrics.soldOut.add(1);
      answered(false);
    } else {
      failed.add(1);
    }
    return;
  }
  answered(true);
  const order = `${env.baseURL}/api/v1/orders/${p.res.json('order_id')}`;
  for (let n = 0; n < maxAttempts; n++) {
    const o = call('GET', order, { headers: auth, tags: { name: 'order' } });
    if (!o || o.res.status !== 200) {
      failed.add(1);
      return;
    }
    if (!o.res.json('in_outbox')) {
      break;
    }
    sleep(pollMs / 1000);
  }
  const pay = call('POST', `${order}/pay`, { headers: auth, tags: { name: 'pay' } });
  if (pay && (pay.res.status === 200 || pay.code === 'already_paid')) {
    paid.add(1);
    paidTime.add(Date.now() - arrival);
  } else {
    failed.add(1);
  }
}

function value(data, name, stat) {
  const m = data.metrics[name];
  return m && m.values[stat] !== undefined ? m.values[stat] : 0;
}

export function handleSummary(data) {
  const n = (name) => value(data, name, 'count');
  const decileSize = (d) => Math.floor(((d + 1) * buyers) / 10) - Math.floor((d * buyers) / 10);
  const s = {
    script: 'wholesale',
    item_id: (data.setup_data && data.setup_data.itemID) || env.itemID,
    units: units,
    buyers: buyers,
    all_answered_s: value(data, 'answered_at', 'max') / 1000,
    answer_ms: { p50: value(data, 'answer_duration', 'med'), p99: value(data, 'answer_duration', 'p(99)'),
      max: value(data, 'answer_duration', 'max'), n: value(data, 'answer_duration', 'count') },
    paid_ms: { p50: value(data, 'paid_duration', 'med'), p99: value(data, 'paid_duration', 'p(99)') },
    requests: value(data, 'http_reqs', 'count'),
    requests_per_buyer: value(data, 'http_reqs', 'count') / buyers,
    qps: value(data, 'http_reqs', 'rate'),
    won: n('accepted'),
    sold_out: n('sold_out'),
    paid: n('paid'),
    failed: n('failed_buyers'),
    errors: value(data, 'errors', 'passes'),
    success_by_decile: wonByDecile.map((_, d) => n(`won_d${d}`) / Math.max(decileSize(d), 1)),
  };
  const f = (v, d) => Number(v || 0).toFixed(d);
  const text = `\n== wholesale (item ${s.item_id}: ${units} units, ${buyers} buyers, ${f(burstMs / 1000, 1)}s burst, ${vus} VUs) ==\n` +
    `  every buyer answered   ${f(s.all_answered_s, 2)}s after the first arrival\n` +
    `  time to final answer   p50 ${f(s.answer_ms.p50, 1)} ms  p99 ${f(s.answer_ms.p99, 1)} ms  max ${f(s.answer_ms.max, 1)} ms\n` +
    `  winner's time to paid  p50 ${f(s.paid_ms.p50, 1)} ms  p99 ${f(s.paid_ms.p99, 1)} ms\n` +
    `  requests               ${s.requests} (${f(s.requests_per_buyer, 2)} per buyer, ${f(s.qps, 0)}/s)\n` +
    `  outcomes               won ${s.won}, sold out ${s.sold_out}, paid ${s.paid}, failed ${s.failed}, 5xx/network ${s.errors}\n` +
    `  success by decile      ${s.success_by_decile.map((v) => f(v, 3)).join(' ')}\n`;
  const out = { stdout: text };
  if (env.summaryJSON) {
    out[env.summaryJSON] = JSON.stringify(s, null, 2);
  }
  return out;
}
