package subscription

import (
	"fmt"
	"slices"
	"strings"
)

// Step is one event of a customer's history as the derivation applied it: the state and the
// entitlement after it, whether the entitlement (or the user id) changed, and why.
type Step struct {
	Event Event
	// Applied is false for an event the fold left out (Undecodable); State and Entitlement are
	// then those of the step before.
	Applied     bool
	State       State
	Entitlement Entitlement
	// Changed reports whether the customer endpoint's answer fields (premium, status, features,
	// user id) differ from the step before (from "no answer" for the first step).
	Changed bool
	// Why is one line naming the rule the event went through.
	Why string
}

// Explain is Derive, one event at a time: for the customer's history (events as Derive takes
// them) plus the stored events the caller could not decode (undecodable: envelopes with ID,
// Type, Created; they are put in Order with the rest and left out of the fold, as the processor
// leaves them out of Derive), it returns one Step per distinct event in the order the derivation
// applies them. It runs the same fold as Derive, so the State of the last applied step equals
// Derive(customerID, events, rules). Pure: no clock, no I/O; it does not modify its inputs.
func Explain(customerID string, events, undecodable []Event, rules Rules) []Step {
	skip := make(map[string]bool, len(undecodable))
	all := slices.Clone(events)
	for _, u := range undecodable {
		skip[u.ID] = true
		all = append(all, Event{ID: u.ID, Type: u.Type, Created: u.Created, CustomerID: u.CustomerID})
	}
	history := historyOf(customerID, all)
	f := newFold(customerID, rules)
	steps := make([]Step, 0, len(history))
	prev := f.state()
	prevEnt := prev.Entitlement(rules)
	for i := range history {
		e := &history[i]
		step := Step{Event: *e}
		if skip[e.ID] {
			step.State, step.Entitlement = prev, prevEnt
			step.Why = e.Type + ": undecodable by this version; left out of the derivation"
			step.Changed = i == 0
			steps = append(steps, step)
			continue
		}
		before := f.subs[subID(e)]
		beforeStatus := ""
		if before != nil {
			beforeStatus = effectiveStatus(before, f.customerDeleted)
		}
		f.apply(e)
		step.Applied = true
		step.State = f.state()
		step.Entitlement = step.State.Entitlement(rules)
		step.Changed = i == 0 || step.State.UserID != prev.UserID || !sameEntitlement(step.Entitlement, prevEnt)
		step.Why = why(e, f, beforeStatus, before != nil, prevEnt, step, rules)
		if n := supersededBy(history, i); n != "" {
			step.Why += "; superseded in the same second by " + n
		}
		steps = append(steps, step)
		prev, prevEnt = step.State, step.Entitlement
	}
	return steps
}

func subID(e *Event) string {
	if e.Subscription != nil {
		return e.Subscription.ID
	}
	return ""
}

// effectiveStatus is the status the state gives the subscription (canceled once deleted).
func effectiveStatus(s *subscriptionState, customerDeleted int64) string {
	if s.deletedAt != 0 || customerDeleted != 0 {
		return StatusCanceled
	}
	return s.object.Status
}

func sameEntitlement(a, b Entitlement) bool {
	return a.Premium == b.Premium && a.Status == b.Status && slices.Equal(a.Features, b.Features)
}

// supersededBy names the next event of the same second about the same object, whose object
// state replaces this event's; "" when none.
func supersededBy(history []Event, i int) string {
	k := keyOf(&history[i])
	if k.kind == objectNone {
		return ""
	}
	for j := i + 1; j < len(history) && history[j].Created == history[i].Created; j++ {
		if keyOf(&history[j]) == k {
			return history[j].ID
		}
	}
	return ""
}

func grantsWhy(status string, rules Rules) string {
	if Grants(status, rules) {
		return status + " grants access"
	}
	if status == StatusPastDue {
		return "past_due does not grant access (PAST_DUE_GRANTS=false)"
	}
	return status + " does not grant access"
}

// why is the one line of an applied event.
func why(e *Event, f *fold, beforeStatus string, existed bool, prevEnt Entitlement, step Step, rules Rules) string {
	switch {
	case e.Subscription != nil:
		s := f.subs[e.Subscription.ID]
		after := effectiveStatus(s, f.customerDeleted)
		var b strings.Builder
		b.WriteString(e.Subscription.ID + " ")
		switch {
		case !existed:
			fmt.Fprintf(&b, "new, %s: %s", after, grantsWhy(after, rules))
		case beforeStatus == StatusCanceled && after == StatusCanceled && e.Subscription.Status != StatusCanceled &&
			e.Type != "customer.subscription.deleted":
			fmt.Fprintf(&b, "stays canceled: deleted before, a later %s cannot revive it", e.Subscription.Status)
		case beforeStatus != after:
			fmt.Fprintf(&b, "%s -> %s: %s", beforeStatus, after, grantsWhy(after, rules))
		default:
			fmt.Fprintf(&b, "still %s: %s", after, grantsWhy(after, rules))
		}
		if e.Type == "customer.subscription.deleted" {
			b.WriteString(" (deleted: canceled for good)")
		}
		return b.String()
	case e.Customer != nil:
		if e.Type == "customer.deleted" || e.Customer.Deleted {
			return "customer deleted: every subscription canceled for good"
		}
		if u := e.Customer.Metadata[f.key]; u != "" {
			return fmt.Sprintf("customer metadata %s=%s: user %s", f.key, u, step.State.UserID)
		}
		return fmt.Sprintf("customer metadata has no %s: user %q", f.key, step.State.UserID)
	case e.Checkout != nil:
		if e.Checkout.ClientReferenceID == "" {
			return e.Checkout.ID + " completed without client_reference_id: ignored for the user id"
		}
		return fmt.Sprintf("%s completed, client_reference_id %s (the user when metadata names none): user %s",
			e.Checkout.ID, e.Checkout.ClientReferenceID, step.State.UserID)
	case e.EntitlementSummary != nil:
		return fmt.Sprintf("entitlement summary %v: added to features while a subscription grants access", e.EntitlementSummary.LookupKeys)
	}
	if ReadsObject(e.Type) {
		return e.Type + ": not in subscription mode; ignored"
	}
	return e.Type + ": a type the rules do not read; ignored"
}
