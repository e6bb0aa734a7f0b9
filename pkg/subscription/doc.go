// Package subscription is Tollgate's core: a pure derivation from a customer's Stripe events to
// the customer's state and from that state to the "is this user premium?" answer. It does no I/O,
// reads no clock and keeps no state between calls; the same events and rules always give the same
// answer.
//
// The pipeline is Decode (one stripeevent.Event to the few facts the rules need), Derive (a
// customer's events, in any order and with duplicates, to a State) and State.Entitlement (a State
// and the Rules to an Entitlement); Merge combines the entitlements of a user's several customers.
//
// # Events read
//
//   - customer.created, customer.updated, customer.deleted: the customer's metadata (for the user
//     id); customer.deleted marks the customer deleted and cancels all its subscriptions, as Stripe
//     does (ended_at, when the object has none, becomes the event's time).
//   - customer.subscription.created, .updated, .deleted, .paused, .resumed,
//     .pending_update_applied, .pending_update_expired and .trial_will_end: each carries the whole
//     subscription, so a subscription's state is its object in its latest event. A .deleted event
//     makes it canceled for good. Every API version is read: current_period_end is the
//     subscription's (before 2025-03-31.basil) or, when it has none, the latest of its items'
//     (basil and later); prices and products come from items.data[].price and, on old versions,
//     items.data[].plan, whether expanded or ids.
//   - checkout.session.completed and checkout.session.async_payment_succeeded in subscription
//     mode: client_reference_id names the user when the customer's metadata does not. The
//     session's subscription id is noted but its status always comes from subscription events.
//   - entitlements.active_entitlement_summary.updated: the lookup keys of the customer's active
//     Stripe Entitlements, from the latest summary.
//
// Everything else, invoice.* included, is only counted (it can be the last event of the history).
// Invoices add nothing to the state: every status change an invoice causes (a failed payment
// turning a subscription past_due or unpaid, a paid one making it active again) reaches us as a
// customer.subscription.updated carrying the whole subscription, usually in the same second;
// guessing a status from invoice.paid or invoice.payment_failed would duplicate that, depend on the
// account's retry and dunning settings, and could contradict the subscription's own event.
//
// # Rules of the answer
//
// The user id is the customer's metadata[Rules.UserIDMetadataKey] in its latest customer event,
// else the client_reference_id of its latest completed subscription-mode checkout session that
// has one. A subscription grants access in active and trialing, and in past_due while
// Rules.PastDueGrants; incomplete, incomplete_expired, unpaid, paused, canceled, a deleted
// subscription and any subscription of a deleted customer do not. Premium is true when any
// subscription grants access. Status is the best subscription status in the order active,
// trialing, past_due, unpaid, paused, incomplete, incomplete_expired, canceled, or "none" without
// subscriptions. Features is the sorted union of the granting subscriptions' features: for each,
// the union of Rules.Plans over its price and product ids, or ["premium"] when none of its ids is
// listed; [] when nothing grants. pause_collection is reported (Subscription.PauseCollection) but
// does not decide access: Stripe keeps such a subscription's status (usually active) while it
// voids or holds its invoices, and the contract decides by status alone.
//
// Stripe Entitlements lookup keys (State.EntitlementFeatures) are added to Features only while
// some subscription grants access; they never grant access by themselves. The summary is sent on
// its own schedule, separately from (and sometimes before or after) the subscription events that
// cause it, and Stripe also grants features for one-off purchases; letting it grant would make
// "premium" depend on a second source that can disagree with the subscriptions the contract
// defines premium by. Used as extra feature names, it lets an operator manage features in Stripe
// without a PLANS_FILE, and a stale summary can at worst name features of a customer who has
// access anyway.
//
// # Order of a history
//
// Stripe stamps events with whole seconds, and a single API call often produces several events of
// the same second (customer.subscription.created then .updated when the first payment succeeds;
// customer.subscription.updated and .paused; .deleted events with customer.deleted). Order, the
// only function in Tollgate that orders events, sorts by created and then breaks ties within a
// second so that the result depends only on the set of events:
//
//  1. The events of one second are grouped by the object they are about (a subscription, the
//     customer, the entitlement summary); other events each stand alone.
//  2. Within an object, *.created events come first and *.deleted events last.
//  3. The object's other events are chained by state. For each such event, Decode records the
//     object as it was just before it: data.object with data.previous_attributes applied (an event
//     without previous_attributes, such as customer.subscription.paused, is taken to have changed
//     nothing). Two events link when the first leaves the object in the state the second found it
//     in, comparing the fields the derivation tracks (status, items, periods, trial, cancellation,
//     pause, latest invoice; metadata for customers; lookup keys for summaries). The chain starts
//     from the object's latest known state: its *.created event of this second, else its last
//     event of an earlier second, else (for the entitlement summary) the empty summary. Events are
//     then transitions between states and the chain is a trail through all of them, found by a
//     small depth-first search that tries, at each step, events that change nothing tracked first
//     (they echo the current state) and then the smallest event ID. A trail through all of a
//     second's events ends in the same state whichever one is found, so a status that goes
//     active, past_due, active, past_due within a second ends past_due whatever the event IDs.
//     When no complete trail exists (an event is missing) the events are taken greedily by the same
//     preferences, then by an event whose prior state no remaining event produces, then by ID.
//  4. The chains and the lone events are merged by repeatedly taking, among the chains' next
//     events, the one with the smallest (rank, ID), where rank is 0 for *.created, 2 for *.deleted
//     and 1 otherwise. So within a second, creations come before updates and deletions (a
//     customer.deleted included) come last.
//
// Derive removes duplicate event IDs (Stripe retries deliver the same event again, unchanged) and
// orders a copy with Order, so any permutation of a history with any duplicates derives the same
// State.
package subscription
