// Plain HTTP through the L4 tier (docs/simulators.md): GET TARGET from
// --vus virtual users for --duration, and check every response: status
// 200 and a backend simulator's answer (its name in the body, the same name
// in x-backend). A failed check fails the run (exit 99).
//
//   k6 run --vus 8 --duration 10s -e TARGET=http://198.18.100.1/ tests/k6/l4-http.js
//
// NEW_CONN=1: a new TCP connection for every request (what an L4 balancer
// decides on: each connection is balanced once).
import http from 'k6/http';
import { check } from 'k6';

const target = __ENV.TARGET;
if (!target) {
  throw new Error('set -e TARGET=http://ADDR[:PORT]/');
}

export const options = {
  noConnectionReuse: __ENV.NEW_CONN === '1',
  thresholds: { checks: ['rate==1'] },
};

export default function () {
  const res = http.get(target);
  const name = res.headers['X-Backend'];
  check(res, {
    'status 200': (r) => r.status === 200,
    'a backend named itself': (r) => typeof name === 'string' && name.length > 0 && r.body === `${name}\n`,
  });
}
