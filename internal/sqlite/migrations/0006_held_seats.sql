-- Each ticket counts its seats held by attempts in progress, kept by
-- triggers on seat_holds: telling a final sell-out (every seat paid) from a
-- retryable one (some only held) is then one row read in the writer, not a
-- count of every hold for each refused attempt of a launch.
ALTER TABLE ticket_stock ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
UPDATE ticket_stock SET held = (SELECT count(*) FROM seat_holds h
	WHERE h.event_id = ticket_stock.event_id AND h.ticket_id = ticket_stock.ticket_id);
CREATE TRIGGER seat_holds_held_insert AFTER INSERT ON seat_holds BEGIN
	UPDATE ticket_stock SET held = held + 1 WHERE event_id = NEW.event_id AND ticket_id = NEW.ticket_id;
END;
CREATE TRIGGER seat_holds_held_delete AFTER DELETE ON seat_holds BEGIN
	UPDATE ticket_stock SET held = held - 1 WHERE event_id = OLD.event_id AND ticket_id = OLD.ticket_id;
END;
