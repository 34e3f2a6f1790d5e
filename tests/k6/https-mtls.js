// HTTPS through the TLS tier with a client certificate (docs/simulators.md):
// GET TARGET (the backend simulator's /echo) from --vus virtual users for
// --duration, and check every response: status 200, a backend named, and
// the client identity alb verified and passed on (its x-client-identity
// header, as the backend saw it). A failed check fails the run (exit 99).
//
//   SSL_CERT_FILE=pki/ca.crt k6 run --vus 4 --duration 10s \
//     -e TARGET=https://alb.xdplb.test/echo -e RESOLVE=198.18.100.2 \
//     -e CLIENT_CERT=pki/client1.crt -e CLIENT_KEY=pki/client1.key -e IDENTITY=CN=client1 \
//     tests/k6/https-mtls.js
//
// SSL_CERT_FILE: k6 verifies the server against the lab's CA (k6 is a Go
//   program; Go reads its trust store from there).
// RESOLVE: connect to this IP for TARGET's host name (SNI and the
//   certificate check keep the name). Optional.
// IDENTITY: the identity expected in the echo (default CN=client1);
//   IDENTITY_HEADER: the echo header holding it (default x-client-identity).
// NEW_CONN=1: a new TCP and TLS connection for every request.
import http from 'k6/http';
import { check } from 'k6';

const target = __ENV.TARGET;
if (!target) {
  throw new Error('set -e TARGET=https://NAME[:PORT]/echo');
}
if (!__ENV.CLIENT_CERT || !__ENV.CLIENT_KEY) {
  throw new Error('set -e CLIENT_CERT=FILE -e CLIENT_KEY=FILE (the TLS tier requires a client certificate)');
}
const host = target.replace(/^https:\/\//, '').split(/[/:]/)[0];
const identity = __ENV.IDENTITY || 'CN=client1';
const identityHeader = (__ENV.IDENTITY_HEADER || 'x-client-identity').toLowerCase();

export const options = {
  hosts: __ENV.RESOLVE ? { [host]: __ENV.RESOLVE } : {},
  tlsAuth: [{ cert: open(__ENV.CLIENT_CERT), key: open(__ENV.CLIENT_KEY) }],
  noConnectionReuse: __ENV.NEW_CONN === '1',
  thresholds: { checks: ['rate==1'] },
};

export default function () {
  const res = http.get(target);
  let echo = null;
  try {
    echo = res.json();
  } catch (e) {
    echo = null;
  }
  check(res, {
    'status 200': (r) => r.status === 200,
    'a backend answered': () => echo !== null && typeof echo.backend === 'string' && echo.backend.length > 0,
    'the client identity reached the backend': () => echo !== null && echo.headers && echo.headers[identityHeader] === identity,
  });
}
