package registration

// Subscriber is an attendee who consented to the mailing list, as a
// mailing list sees them.
type Subscriber struct {
	Email          string
	FirstName      string
	LastName       string
	EventID        string
	RegistrationID string
}
