// Shared pieces of the k6 scripts: configuration from the environment, the
// user JWT (HS256, built by hand: k6 has no JWT module and we use no npm),
// the API calls of a purchase and one summary format for every script.
import http from 'k6/http';
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import { Counter, Rate, Trend } from 'k6/metrics';

// Env values with their defaults. SECKILL_JWT_SECRET and
// SECKILL_ADMIN_TOKEN default to the docker-compose defaults.
export const env = {
  baseURL: (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, ''),
  itemID: __ENV.ITEM_ID ? parseInt(__ENV.ITEM_ID, 10) : 0,
  rate: parseInt(__ENV.RATE || '1000', 10),
  duration: __ENV.DURATION || '20s',
  jwtSecret: __ENV.SECKILL_JWT_SECRET || 'dev-jwt-secret-change-me',
  // The purchase-token key, for a crowd that holds tokens from before the
  // item sold out (signPurchaseToken); only soldout.js needs it.
  purchaseKey: __ENV.SECKILL_PURCHASE_KEY || '',
  purchaseKeyID: parseInt(__ENV.SECKILL_PURCHASE_KEY_ID || '1', 10),
  adminToken: __ENV.SECKILL_ADMIN_TOKEN || 'dev-admin-token',
  p99ms: parseFloat(__ENV.P99_MS || '20'),
  summaryJSON: __ENV.SUMMARY_JSON || '',
  // Users are ID_BASE + iteration; a fresh base per run keeps the per-user
  // limit from refusing a second run against the same item.
  idBase: __ENV.ID_BASE ? parseInt(__ENV.ID_BASE, 10) : 0,
};

// Every script counts outcomes the same way. errors are what a load test
// must not see: network failures (status 0) and 5xx. A 409 sold_out is the
// expected answer of a flash sale, not an error.
export const metrics = {
  accepted: new Counter('accepted'),
  soldOut: new Counter('sold_out'),
  rejected: new Counter('rejected'), // other 4xx: purchase_limit, token_invalid, rate_limited...
  errors: new Rate('errors'),
  purchase: new Trend('purchase_duration', true),
  token: new Trend('token_duration', true),
};

// 4xx are answers, not failures, for k6's own http_req_failed too.
http.setResponseCallback(http.expectedStatuses({ min: 200, max: 499 }));

// summaryTrendStats gives med (= p50), p95 and p99 to handleSummary.
export const summaryTrendStats = ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'];

// arrivalScenario is a constant-arrival-rate spike: the whole rate from the
// first second, as when a sale opens. VUs are allocated up front because
// allocating them mid-test stalls the generator exactly at the spike.
export function arrivalScenario(rate, duration) {
  return {
    executor: 'constant-arrival-rate',
    rate: rate,
    timeUnit: '1s',
    duration: duration,
    preAllocatedVUs: Math.max(20, Math.ceil(rate / 20)),
    maxVUs: Math.max(100, Math.ceil(rate / 4)),
    gracefulStop: '5s',
  };
}

// setupRun returns the item to buy and the first user id of this run: the
// item from ITEM_ID, or a new one created with the admin token.
export function setupRun(name, spec) {
  let itemID = env.itemID;
  if (!itemID) {
    itemID = createItem(Object.assign({ name: name, price_minor: 1000, currency: 'EUR' }, spec));
    console.log(`${name}: created item ${itemID} (${JSON.stringify(spec)})`);
  }
  const idBase = env.idBase || (Date.now() % 100000000) * 1000;
  return { itemID: itemID, idBase: idBase };
}

// createItem creates an item through the admin API and returns its id.
export function createItem(spec) {
  const res = http.post(`${env.baseURL}/api/v1/admin/items`, JSON.stringify(spec), {
    headers: { Authorization: `Bearer ${env.adminToken}`, 'Content-Type': 'application/json' },
    tags: { name: 'admin_create_item' },
  });
  if (res.status !== 201) {
    throw new Error(`create item: got status ${res.status} (${res.body}), want 201`);
  }
  return res.json('id');
}

const jwtHeader = encoding.b64encode(JSON.stringify({ alg: 'HS256', typ: 'JWT' }), 'rawurl');

// signJWT makes the user token the API accepts: HS256, sub = decimal user
// id, exp required. base64url without padding, as RFC 7519 says.
export function signJWT(userID, ttlSeconds) {
  const now = Math.floor(Date.now() / 1000);
  const payload = encoding.b64encode(
    JSON.stringify({ sub: String(userID), iat: now, exp: now + (ttlSeconds || 3600) }),
    'rawurl',
  );
  const signingInput = `${jwtHeader}.${payload}`;
  const sig = crypto.hmac('sha256', env.jwtSecret, signingInput, 'base64rawurl');
  return `${signingInput}.${sig}`;
}

// signPurchaseToken makes a purchase token as the service does (package
// order/token: version, key id, item, user, expiry in ms, 16-byte nonce,
// HMAC-SHA256 of those 42 bytes; URL-safe base64): what a buyer got before
// the item sold out, when the service issued tokens for it.
export function signPurchaseToken(itemID, userID, ttlSeconds) {
  if (!env.purchaseKey) {
    throw new Error('signPurchaseToken needs SECKILL_PURCHASE_KEY');
  }
  const msg = new Uint8Array(42);
  const v = new DataView(msg.buffer);
  v.setUint8(0, 1);
  v.setUint8(1, env.purchaseKeyID);
  const put64 = (off, n) => {
    v.setUint32(off, Math.floor(n / 4294967296));
    v.setUint32(off + 4, n % 4294967296);
  };
  put64(2, itemID);
  put64(10, userID);
  put64(18, Date.now() + (ttlSeconds || 3600) * 1000);
  msg.set(new Uint8Array(crypto.randomBytes(16)), 26);
  const mac = new Uint8Array(crypto.hmac('sha256', env.purchaseKey, msg.buffer, 'binary'));
  const tok = new Uint8Array(74);
  tok.set(msg, 0);
  tok.set(mac, 42);
  return encoding.b64encode(tok.buffer, 'rawurl');
}

function isError(res) {
  return res.status === 0 || res.status >= 500;
}

// problemCode is the machine code of a problem+json answer ('' otherwise).
export function problemCode(res) {
  if (!res.body || res.status < 400) {
    return '';
  }
  try {
    return res.json('code') || '';
  } catch (e) {
    return '';
  }
}

// issueToken asks for a one-time purchase token; it returns '' on failure.
export function issueToken(itemID, jwt) {
  const res = http.post(`${env.baseURL}/api/v1/items/${itemID}/tokens`, null, {
    headers: { Authorization: `Bearer ${jwt}` },
    tags: { name: 'tokens' },
  });
  metrics.errors.add(isError(res));
  metrics.token.add(res.timings.duration);
  if (res.status !== 201) {
    return '';
  }
  return res.json('token');
}

// purchase sends one purchase and counts its outcome. It returns
// {status, code, orderID, res}.
export function purchase(itemID, jwt, key, tags) {
  const res = http.post(`${env.baseURL}/api/v1/items/${itemID}/purchase`, null, {
    headers: { Authorization: `Bearer ${jwt}`, 'Idempotency-Key': key },
    tags: Object.assign({ name: 'purchase' }, tags || {}),
  });
  return purchaseResult(res);
}

// purchaseResult classifies a purchase answer; it records latency and the
// error rate but leaves the accepted/sold-out counting to the caller, since
// a replayed 202 is not a new purchase.
export function purchaseResult(res) {
  metrics.errors.add(isError(res));
  metrics.purchase.add(res.timings.duration);
  const out = { status: res.status, code: problemCode(res), orderID: '', res: res };
  if (res.status === 202) {
    out.orderID = res.json('order_id');
  }
  return out;
}

// countOutcome counts a first (not replayed) purchase answer.
export function countOutcome(r) {
  if (r.status === 202) {
    metrics.accepted.add(1);
  } else if (r.status === 409 && r.code === 'sold_out') {
    metrics.soldOut.add(1);
  } else if (r.status >= 400 && r.status < 500) {
    metrics.rejected.add(1);
  }
}

function metricValue(data, name, stat) {
  const m = data.metrics[name];
  if (!m || m.values[stat] === undefined) {
    return 0;
  }
  return m.values[stat];
}

function failedThresholds(data) {
  const out = [];
  for (const [name, m] of Object.entries(data.metrics)) {
    for (const [expr, t] of Object.entries(m.thresholds || {})) {
      if (!t.ok) {
        out.push(`${name}: ${expr}`);
      }
    }
  }
  return out;
}

function fixed(v, digits) {
  return Number(v || 0).toFixed(digits);
}

// summary is every script's handleSummary: a short text report on stdout
// and, if SUMMARY_JSON is set, the same numbers as JSON for bench/run.sh.
export function summary(script, data, extra) {
  const seconds = (data.state.testRunDurationMs || 0) / 1000;
  const accepted = metricValue(data, 'accepted', 'count');
  const s = {
    script: script,
    item_id: (data.setup_data && data.setup_data.itemID) || env.itemID,
    offered_rate: env.rate,
    duration_s: seconds,
    iterations: metricValue(data, 'iterations', 'count'),
    dropped_iterations: metricValue(data, 'dropped_iterations', 'count'),
    requests: metricValue(data, 'http_reqs', 'count'),
    qps: metricValue(data, 'http_reqs', 'rate'),
    accepted: accepted,
    accepted_per_s: seconds > 0 ? accepted / seconds : 0,
    sold_out: metricValue(data, 'sold_out', 'count'),
    rejected: metricValue(data, 'rejected', 'count'),
    error_rate: metricValue(data, 'errors', 'rate'),
    errors: metricValue(data, 'errors', 'passes'),
    purchase_ms: {
      count: metricValue(data, 'purchase_duration', 'count'),
      p50: metricValue(data, 'purchase_duration', 'med'),
      p95: metricValue(data, 'purchase_duration', 'p(95)'),
      p99: metricValue(data, 'purchase_duration', 'p(99)'),
      max: metricValue(data, 'purchase_duration', 'max'),
    },
    token_ms: {
      p50: metricValue(data, 'token_duration', 'med'),
      p99: metricValue(data, 'token_duration', 'p(99)'),
    },
    failed_thresholds: failedThresholds(data),
  };
  for (const [k, v] of Object.entries(extra || {})) {
    s[k] = metricValue(data, v, 'count');
  }
  s.thresholds_ok = s.failed_thresholds.length === 0;

  const p = s.purchase_ms;
  let text = `\n== ${script} (item ${s.item_id}, offered ${s.offered_rate} it/s, ${fixed(seconds, 1)}s) ==\n` +
    `  QPS (all requests)  ${fixed(s.qps, 0)}   requests ${s.requests}   dropped iterations ${s.dropped_iterations}\n` +
    `  purchase latency    p50 ${fixed(p.p50, 2)} ms   p95 ${fixed(p.p95, 2)} ms   p99 ${fixed(p.p99, 2)} ms   max ${fixed(p.max, 1)} ms   (n=${p.count})\n` +
    `  accepted            ${s.accepted} (${fixed(s.accepted_per_s, 0)}/s)   sold_out ${s.sold_out}   other 4xx ${s.rejected}   errors ${s.errors} (${fixed(100 * s.error_rate, 3)}%)\n`;
  for (const k of Object.keys(extra || {})) {
    text += `  ${k.padEnd(19)} ${s[k]}\n`;
  }
  text += s.thresholds_ok ? '  thresholds          ok\n' : `  thresholds          FAILED: ${s.failed_thresholds.join('; ')}\n`;

  const out = { stdout: text };
  if (env.summaryJSON) {
    out[env.summaryJSON] = JSON.stringify(s, null, 2);
  }
  return out;
}
