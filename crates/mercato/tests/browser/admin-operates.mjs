// An admin visits every console page, refunds an order and replays a parked
// event.
//
//   MERCATO_BASE_URL               http://127.0.0.1:41234
//   MERCATO_ADMIN_EMAIL            an admin's email
//   MERCATO_ADMIN_PASSWORD         and password
//   MERCATO_ORDER_ID               a confirmed order, to refund in full
//   MERCATO_DEAD_LETTER_EVENT_ID   the id of an event parked as a dead letter

import {
  scenario, step, launch, check, visit, need, fail,
  expectVisible, expectStatus, signIn, waitForText, field, button, link,
} from './lib.mjs';

const CONSOLE_PAGES = [
  'Dashboard', 'Orders', 'Products', 'Categories', 'Promotions', 'Shipping and tax',
  'Customers', 'Reviews', 'Experiments', 'Reports', 'Dead letters',
];

await scenario('admin-operates', async () => {
  const email = need('MERCATO_ADMIN_EMAIL', "the admin's email");
  const password = need('MERCATO_ADMIN_PASSWORD', "the admin's password");
  const orderId = need('MERCATO_ORDER_ID', 'a confirmed order to refund');
  const eventId = need('MERCATO_DEAD_LETTER_EVENT_ID', 'the id of a parked event');

  const { page } = await launch();

  await step('sign in', async () => {
    await signIn(page, email, password, { next: '/admin', checkName: 'signin' });
    await expectVisible(page.getByRole('heading', { level: 1, name: 'Dashboard' }), 'the heading (h1) "Dashboard"');
  });

  const nav = page.getByRole('navigation', { name: 'Console' });

  await step('the console nav has every page', async () => {
    await expectVisible(nav, 'the console nav (aria-label "Console")');
    const missing = [];
    for (const name of CONSOLE_PAGES) if ((await link(nav, name).count()) === 0) missing.push(name);
    if (missing.length) fail(`the console nav lacks the link(s): ${missing.join(', ')}`);
  });

  for (const name of CONSOLE_PAGES) {
    await step(`console page "${name}"`, async () => {
      const target = link(nav, name).first();
      const href = await target.getAttribute('href');
      if (!href) fail(`the nav link "${name}" has no href`);
      const wanted = new URL(href, page.url());
      await target.click();
      await page.waitForURL((u) => u.pathname === wanted.pathname, { waitUntil: 'load' });
      await expectVisible(page.getByRole('heading', { level: 1 }), `a heading (h1) on the console page "${name}"`);
      await check(page, `console-${name}`);
    });
  }

  await step(`refund order ${orderId}`, async () => {
    await visit(page, `/admin/orders/${encodeURIComponent(orderId)}`);
    const status = page.locator('#order-status');
    await expectVisible(status, 'the order status (#order-status)');
    if ((await status.getAttribute('role')) !== 'status') fail('#order-status does not have role="status"');
    await check(page, 'order');
    const refund = page.locator('form').filter({ has: button(page, 'Refund') }).first();
    await expectVisible(button(refund, 'Refund'), 'the button "Refund"');
    const amount = field(refund, 'Amount');
    if (await amount.count()) await amount.fill('');
    await button(refund, 'Refund').click();
    await page.waitForLoadState('load');
    await waitForText(page, status, 'refunded', {
      timeout: 15_000,
      reload: true,
      what: `the status (#order-status) of order ${orderId}`,
    });
    await check(page, 'order-refunded');
  });

  await step(`replay dead letter ${eventId}`, async () => {
    await visit(page, '/admin/dead-letters');
    const row = page.getByRole('row').filter({ hasText: eventId });
    await expectVisible(row, `a row of the dead-letter table with the event id ${eventId}`);
    if ((await row.count()) > 1) fail(`${await row.count()} rows mention the event id ${eventId}`);
    await check(page, 'dead-letters');
    await button(row, 'Replay').click();
    await page.waitForLoadState('load');
    await expectStatus(page, 'Replayed');
    await check(page, 'dead-letter-replayed');
  });
});
