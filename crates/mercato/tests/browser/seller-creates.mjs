// A seller creates a product in the console and stocks it. Prints
// `product_id=<id>` on stdout.
//
//   MERCATO_BASE_URL          http://127.0.0.1:41234
//   MERCATO_SELLER_EMAIL      a seller's email
//   MERCATO_SELLER_PASSWORD   and password
//   MERCATO_SKU               a SKU no product has yet

import {
  scenario, step, launch, check, visit, need, result, fail,
  expectVisible, signIn, waitForPath, field, button, link, fillOrSelect,
} from './lib.mjs';

await scenario('seller-creates', async () => {
  const email = need('MERCATO_SELLER_EMAIL', "the seller's email");
  const password = need('MERCATO_SELLER_PASSWORD', "the seller's password");
  const sku = need('MERCATO_SKU', 'a SKU not used yet');
  const title = `Browser lamp ${sku}`;

  const { page } = await launch();
  let productId;

  await step('sign in', async () => {
    await signIn(page, email, password, { checkName: 'signin' });
    await expectVisible(link(page, 'Console'), 'the link "Console" of a seller');
  });

  await step('console dashboard', async () => {
    await link(page, 'Console').click();
    await waitForPath(page, /^\/admin\/?(\?|$)/);
    await expectVisible(page.getByRole('heading', { level: 1, name: 'Dashboard' }), 'the heading (h1) "Dashboard"');
    await expectVisible(page.getByRole('navigation', { name: 'Console' }), 'the console nav (aria-label "Console")');
    await check(page, 'dashboard');
  });

  await step('products', async () => {
    await visit(page, '/admin/products');
    await check(page, 'products');
  });

  await step('new product form', async () => {
    await visit(page, '/admin/products/new');
    await expectVisible(field(page, 'Title'), 'the input "Title"');
    await check(page, 'product-new');
  });

  await step('create the product', async () => {
    await field(page, 'Title').fill(title);
    await field(page, 'Description').fill('A sturdy desk lamp made by the browser tests.');
    await fillOrSelect(field(page, 'Category'), 'Lighting');
    await field(page, 'SKU').fill(sku);
    await field(page, 'Price').fill('12.50');
    await button(page, 'Create product').click();
    const m = await waitForPath(page, /^\/admin\/products\/(?!new(?:[/?#]|$))([^/?#]+)\/?(\?|$)/);
    productId = decodeURIComponent(m[1]);
    await expectVisible(page.getByRole('heading', { level: 1, name: title }), `the heading (h1) "${title}"`);
    await check(page, 'product-created');
  });

  await step('set stock 25 in main', async () => {
    let form = page.locator('form').filter({ has: button(page, 'Set stock') });
    if ((await form.count()) === 0) fail('no form with a button "Set stock" on the product page');
    if ((await form.count()) > 1) form = form.filter({ hasText: sku });
    form = form.first();
    await field(form, 'Quantity').fill('25');
    await field(form, 'Warehouse').fill('main');
    await button(form, 'Set stock').click();
    await page.waitForLoadState('load');
    await expectVisible(page.getByRole('cell', { name: '25', exact: true }), 'a table cell "25" (the stock on hand)');
    await check(page, 'stock-set');
  });

  result('product_id', productId);
});
