-- Who can be told something: filled from `user.registered`.
CREATE TABLE recipients (
    user_id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- One row per message, rendered when created; the dispatcher delivers it.
-- A redelivered event finds its (event_id, template) taken and adds nothing.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    template TEXT NOT NULL,
    channel TEXT NOT NULL,
    recipient_email TEXT NOT NULL,
    recipient_name TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    order_id TEXT,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (event_id, template)
);
CREATE INDEX notifications_user ON notifications (user_id, id);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
