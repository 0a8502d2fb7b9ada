-- registrations_ticket (event_id, ticket_id) is a prefix of
-- registrations_ticket_email (event_id, ticket_id, email_key), which serves
-- every query the shorter one did. Kept, it misleads the planner when the
-- table's statistics are young (a new database, a new event): counting one
-- address's registrations of a ticket then walks every registration of the
-- ticket instead of the address's few, once per attempt of a launch.
DROP INDEX registrations_ticket;
