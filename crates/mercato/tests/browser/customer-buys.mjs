// A customer finds a product through the search box, buys it with a promotion
// code and a test card, and sees the order confirmed; the home and product
// pages also at phone size. Prints `order_id=<id>` on stdout.
//
//   MERCATO_BASE_URL            http://127.0.0.1:41234
//   MERCATO_CUSTOMER_EMAIL      a customer's email
//   MERCATO_CUSTOMER_PASSWORD   and password
//   MERCATO_SEARCH              a query that finds the product
//   MERCATO_PRODUCT_TITLE       the product's title, as the search hit's link
//   MERCATO_PROMO_CODE          a promotion code valid for this cart

import {
  scenario, step, launch, phonePage, check, visit, need, result, fail,
  expectHeader, expectVisible, fillSignIn, waitForPath, waitForText,
  field, button, link, fillOrSelect, selectSomething,
} from './lib.mjs';

await scenario('customer-buys', async () => {
  const email = need('MERCATO_CUSTOMER_EMAIL', "the customer's email");
  const password = need('MERCATO_CUSTOMER_PASSWORD', "the customer's password");
  const query = need('MERCATO_SEARCH', 'a search query that finds the product');
  const title = need('MERCATO_PRODUCT_TITLE', "the product's title");
  const promo = need('MERCATO_PROMO_CODE', 'a promotion code');

  const { browser, context, page } = await launch();
  let productPath;
  let orderId;

  await step('home page, signed out', async () => {
    await visit(page, '/');
    await expectHeader(page, { signedIn: false });
    await check(page, 'home');
  });

  await step('sign in', async () => {
    await link(page, 'Sign in').click();
    await waitForPath(page, /^\/signin(\?|$)/);
    await fillSignIn(page, email, password, { checkName: 'signin' });
    await expectHeader(page, { signedIn: true });
  });

  await step('search suggestions while typing', async () => {
    if (new URL(page.url()).pathname !== '/') await visit(page, '/');
    const box = page.getByRole('search').getByLabel('Search products', { exact: true });
    await box.click();
    await box.pressSequentially(query, { delay: 80 });
    // Suggestions are links (to a product, a category or a search) in the list #suggestions.
    await expectVisible(page.locator('#suggestions').getByRole('link').first(), `suggestions (links in #suggestions) for "${query}"`);
    await check(page, 'suggestions');
  });

  await step('search results', async () => {
    await page.getByRole('search').getByLabel('Search products', { exact: true }).press('Enter');
    await waitForPath(page, /^\/search\?/);
    await expectVisible(link(page, title), `a search hit, the link "${title}"`);
    await expectVisible(field(page, 'Sort by'), 'the select "Sort by"');
    await expectVisible(page.getByRole('complementary', { name: 'Filters' }), 'the facets, <aside aria-label="Filters">');
    await check(page, 'search-results');
  });

  await step('product page', async () => {
    await link(page, title).first().click();
    const m = await waitForPath(page, /^\/products\/([^/?#]+)/);
    productPath = `/products/${m[1]}`;
    await expectVisible(page.getByRole('heading', { level: 1, name: title }), `the heading (h1) "${title}"`);
    await expectVisible(page.getByRole('heading', { name: 'Reviews' }), 'the heading "Reviews"');
    await check(page, 'product');
  });

  await step('add to cart', async () => {
    const variant = field(page, 'Variant');
    if (await variant.count()) await selectSomething(variant);
    await field(page, 'Quantity').fill('1');
    await button(page, 'Add to cart').click();
    await waitForPath(page, /^\/cart(\?|$)/);
    await expectVisible(page.getByRole('table').filter({ hasText: title }), `the cart's table with a line "${title}"`);
    await check(page, 'cart');
  });

  await step('apply the promotion code', async () => {
    await field(page, 'Promotion code').fill(promo);
    await button(page, 'Apply').click();
    await page.waitForLoadState('load');
    const discount = page.getByRole('row').filter({ has: page.locator('th', { hasText: /^\s*Discount\s*$/ }) });
    await expectVisible(discount, `a row headed "Discount" after applying ${promo}`);
    const text = (await discount.first().innerText()).replace(/\s+/g, ' ');
    if (!/\d/.test(text)) fail(`the Discount row shows no amount: "${text}"`);
    await check(page, 'cart-discount');
  });

  await step('checkout', async () => {
    await link(page, 'Checkout').click();
    await waitForPath(page, /^\/checkout(\?|$)/);
    await field(page, 'Full name').fill('Erika Mustermann');
    await field(page, 'Address').fill('Hauptstraße 1');
    await field(page, 'City').fill('Berlin');
    await field(page, 'Postal code').fill('10115');
    await fillOrSelect(field(page, 'Country'), 'DE');
    const shipping = field(page, 'Shipping method');
    if (await shipping.count()) await selectSomething(shipping);
    await field(page, 'Test card').selectOption('tok_visa');
    await check(page, 'checkout');
  });

  await step('place the order and see it confirmed', async () => {
    await button(page, 'Place order').click();
    const m = await waitForPath(page, /^\/account\/orders\/([^/?#]+)/, 20_000);
    orderId = decodeURIComponent(m[1]);
    await waitForText(page, page.locator('#order-status'), 'confirmed', {
      timeout: 15_000,
      failOn: /cancelled/,
      what: `the order's status (#order-status) of order ${orderId}`,
    });
    if ((await page.locator('#order-status').getAttribute('role')) !== 'status') {
      fail('#order-status does not have role="status"');
    }
    await check(page, 'order-confirmed');
  });

  await step('home and product page at phone size', async () => {
    const phone = await phonePage(browser, context);
    await visit(phone.page, '/');
    await expectVisible(link(phone.page, 'Mercato'), 'the link "Mercato" at phone size');
    await check(phone.page, 'phone-home');
    await visit(phone.page, productPath);
    await expectVisible(phone.page.getByRole('heading', { level: 1, name: title }), `the heading (h1) "${title}" at phone size`);
    await expectVisible(button(phone.page, 'Add to cart'), 'the button "Add to cart" at phone size');
    await check(phone.page, 'phone-product');
    await phone.context.close();
  });

  result('order_id', orderId);
});
