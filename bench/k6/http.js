// The scenario `cargo xtask bench` runs with k6 (docs/benchmarks.md): GET
// TARGET as fast as possible from --vus virtual users for --duration.
//
//   k6 run --vus 64 --duration 10s -e TARGET=https://198.18.2.11/ \
//      [-e NEW_CONN=1] [-e CLIENT_CERT=certs/client1.crt -e CLIENT_KEY=certs/client1.key] \
//      bench/k6/http.js
//
// NEW_CONN=1: a new TCP (and TLS) connection for every request.
// CLIENT_CERT/CLIENT_KEY: present a client certificate (mTLS).
// TLS 1.3 only; the lab's demo certificates are not verified (the benchmark
// measures the handshake, not the trust store).
import http from 'k6/http';

const cert = __ENV.CLIENT_CERT ? open(__ENV.CLIENT_CERT) : null;
const key = __ENV.CLIENT_KEY ? open(__ENV.CLIENT_KEY) : null;

export const options = {
  insecureSkipTLSVerify: true,
  tlsVersion: { min: 'tls1.3', max: 'tls1.3' },
  noConnectionReuse: __ENV.NEW_CONN === '1',
  discardResponseBodies: true,
  // Any host: the lab addresses the proxies by IP.
  tlsAuth: cert ? [{ cert: cert, key: key }] : [],
};

export default function () {
  http.get(__ENV.TARGET);
}
