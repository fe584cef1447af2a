//! The message templates, compiled into the binary: a subject and a plain
//! text body per [`Template`], rendered with minijinja.

use crate::domain::Template;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// What a template may use.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MessageContext {
    /// The customer's name.
    pub name: String,
    pub order_id: String,
    /// An amount already formatted for a person (`19.99 EUR`).
    pub total: Option<String>,
    /// The cancel reason code (`out_of_stock`, `payment_failed`, ...).
    pub reason: Option<String>,
    /// The subscription the message is about, if any.
    pub subscription_id: Option<String>,
    /// How many times something was tried (a subscription's order).
    pub attempts: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

const SOURCES: [(Template, &str, &str); 5] = [
    (
        Template::OrderConfirmed,
        include_str!("../templates/order_confirmed.subject.txt"),
        include_str!("../templates/order_confirmed.body.txt"),
    ),
    (
        Template::OrderCancelled,
        include_str!("../templates/order_cancelled.subject.txt"),
        include_str!("../templates/order_cancelled.body.txt"),
    ),
    (
        Template::OrderShipped,
        include_str!("../templates/order_shipped.subject.txt"),
        include_str!("../templates/order_shipped.body.txt"),
    ),
    (
        Template::OrderRefunded,
        include_str!("../templates/order_refunded.subject.txt"),
        include_str!("../templates/order_refunded.body.txt"),
    ),
    (
        Template::SubscriptionPastDue,
        include_str!("../templates/subscription_past_due.subject.txt"),
        include_str!("../templates/subscription_past_due.body.txt"),
    ),
];

fn subject_name(t: Template) -> String {
    format!("{}.subject.txt", t.as_str())
}

fn body_name(t: Template) -> String {
    format!("{}.body.txt", t.as_str())
}

impl Templates {
    /// Compiles every template; fails when one does not parse.
    pub fn new() -> anyhow::Result<Self> {
        let mut env = Environment::new();
        // A misspelt variable fails loudly instead of rendering as nothing.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        for (template, subject, body) in SOURCES {
            env.add_template_owned(subject_name(template), subject)?;
            env.add_template_owned(body_name(template), body)?;
        }
        Ok(Self { env })
    }

    pub fn render(&self, template: Template, ctx: &MessageContext) -> anyhow::Result<Rendered> {
        let subject = self
            .env
            .get_template(&subject_name(template))?
            .render(ctx)?;
        let body = self.env.get_template(&body_name(template))?.render(ctx)?;
        Ok(Rendered {
            // A header cannot span lines.
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            body: format!("{}\n", body.trim_end()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(total: Option<&str>, reason: Option<&str>) -> MessageContext {
        MessageContext {
            name: "Ada Lovelace".into(),
            order_id: "0196f3a0-0000-7000-8000-000000000001".into(),
            total: total.map(Into::into),
            reason: reason.map(Into::into),
            subscription_id: Some("0196f3a0-0000-7000-8000-0000000000aa".into()),
            attempts: Some(3),
        }
    }

    fn templates() -> Templates {
        Templates::new().expect("templates compile")
    }

    #[test]
    fn every_template_renders_a_one_line_subject_and_a_greeting() {
        let t = templates();
        for template in Template::ALL {
            let r = t
                .render(template, &ctx(Some("19.99 EUR"), Some("out_of_stock")))
                .expect("renders");
            assert!(!r.subject.contains('\n'), "{template:?}: {:?}", r.subject);
            assert!(
                r.subject.contains("0196f3a0-0000-7000-8000-000000000001"),
                "{template:?}: {:?}",
                r.subject
            );
            assert!(
                r.body.starts_with("Hello Ada Lovelace,\n"),
                "{template:?}: {:?}",
                r.body
            );
            assert!(!r.body.contains("{{"), "{template:?}: {:?}", r.body);
        }
    }

    #[test]
    fn order_confirmed_shows_the_order_and_its_total() {
        let r = templates()
            .render(Template::OrderConfirmed, &ctx(Some("19.99 EUR"), None))
            .expect("renders");
        assert_eq!(
            r.subject,
            "Your order 0196f3a0-0000-7000-8000-000000000001 is confirmed"
        );
        assert!(r.body.contains("Total paid: 19.99 EUR"), "{}", r.body);
        assert!(r
            .body
            .contains("thank you for your order 0196f3a0-0000-7000-8000-000000000001"));
    }

    #[test]
    fn order_cancelled_explains_each_reason() {
        let t = templates();
        let body = |reason: &str| {
            t.render(
                Template::OrderCancelled,
                &ctx(Some("5.00 EUR"), Some(reason)),
            )
            .expect("renders")
            .body
        };
        assert!(body("out_of_stock").contains("out of stock. Nothing was charged."));
        assert!(body("payment_failed").contains("the payment did not go\nthrough"));
        assert!(body("customer_cancelled").contains("cancelled as you asked"));
        assert!(body("lost_in_transit").contains("cancelled (lost_in_transit)"));
        assert!(body("out_of_stock").contains("Order total: 5.00 EUR"));
        // Only the branch for the reason is rendered.
        assert!(!body("out_of_stock").contains("as you asked"));
    }

    #[test]
    fn order_refunded_shows_the_amount() {
        let r = templates()
            .render(Template::OrderRefunded, &ctx(Some("42.00 USD"), None))
            .expect("renders");
        assert!(
            r.body.contains("42.00 USD is on its way back"),
            "{}",
            r.body
        );
        assert_eq!(
            r.subject,
            "Your order 0196f3a0-0000-7000-8000-000000000001 was refunded"
        );
    }

    #[test]
    fn a_past_due_subscription_names_itself_and_the_last_order() {
        let r = templates()
            .render(
                Template::SubscriptionPastDue,
                &ctx(None, Some("payment_failed")),
            )
            .expect("renders");
        assert_eq!(
            r.subject,
            "Your subscription could not be renewed (order 0196f3a0-0000-7000-8000-000000000001)"
        );
        assert!(r.body.contains("we tried 3 times"), "{}", r.body);
        assert!(r.body.contains("0196f3a0-0000-7000-8000-0000000000aa"));
        assert!(r.body.contains("payment_failed"));
    }

    #[test]
    fn order_shipped_needs_no_total() {
        let r = templates()
            .render(Template::OrderShipped, &ctx(None, None))
            .expect("renders");
        assert!(r.body.contains("has been shipped"), "{}", r.body);
    }
}
