DROP TABLE IF EXISTS stripe_events;
