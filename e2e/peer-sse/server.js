// The peer of the listener in the side-by-side webhook benchmark (BENCH_ONLY=peer in
// e2e/cmd/bench): stripe-sync-engine, the Supabase library that syncs Stripe webhooks into
// Postgres, served the way its own server does it: verify the signature, write the object, 200.
// Variables: PORT, DATABASE_URL, STRIPE_WEBHOOK_SECRET.
'use strict';
const http = require('node:http');
const { StripeSync, runMigrations } = require('@supabase/stripe-sync-engine');

async function main() {
  const databaseUrl = process.env.DATABASE_URL;
  await runMigrations({ databaseUrl, schema: 'stripe' });
  const sync = new StripeSync({
    poolConfig: { connectionString: databaseUrl, max: 10 },
    stripeSecretKey: 'sk_test_tollgate_peer', // never used: nothing is fetched from Stripe
    stripeWebhookSecret: process.env.STRIPE_WEBHOOK_SECRET,
    backfillRelatedEntities: false,
  });
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      sync.processWebhook(Buffer.concat(chunks), req.headers['stripe-signature']).then(
        () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"received":true}'); },
        (err) => { res.writeHead(400, { 'content-type': 'application/json' }); res.end(JSON.stringify({ error: String(err && err.message) })); },
      );
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('ready'));
}

main().catch((err) => { console.error(err); process.exit(1); });
