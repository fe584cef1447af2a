// A customer reviews a product they bought; then their account pages, and the
// registration page signed out.
//
//   MERCATO_BASE_URL            http://127.0.0.1:41234
//   MERCATO_CUSTOMER_EMAIL      a customer's email
//   MERCATO_CUSTOMER_PASSWORD   and password
//   MERCATO_PRODUCT_ID          a product this customer has a confirmed order of

import {
  scenario, step, launch, newPage, check, visit, need,
  expectVisible, expectStatus, expectHeader, signIn, field, button, fail,
} from './lib.mjs';

const REVIEW_TITLE = 'Bright and sturdy';

await scenario('customer-reviews', async () => {
  const email = need('MERCATO_CUSTOMER_EMAIL', "the customer's email");
  const password = need('MERCATO_CUSTOMER_PASSWORD', "the customer's password");
  const productId = need('MERCATO_PRODUCT_ID', 'a product the customer has bought');
  const productPath = `/products/${encodeURIComponent(productId)}`;

  const { browser, page } = await launch();

  await step('sign in', async () => {
    await signIn(page, email, password, { next: productPath, checkName: 'signin' });
  });

  await step('product page with the review form', async () => {
    if (new URL(page.url()).pathname !== productPath) await visit(page, productPath);
    await expectVisible(page.getByRole('heading', { level: 1 }), 'the product heading (h1)');
    await expectVisible(page.getByRole('heading', { name: 'Reviews' }), 'the heading "Reviews"');
    await expectVisible(field(page, 'Rating'), 'the review form (select "Rating"): may this customer review?');
    await check(page, 'product');
  });

  await step('post a review', async () => {
    await field(page, 'Rating').selectOption('5');
    await field(page, 'Title').fill(REVIEW_TITLE);
    await field(page, 'Review').fill('Lights the whole desk and has not wobbled once in a month.');
    await button(page, 'Post review').click();
    await page.waitForLoadState('load');
    await expectStatus(page, 'Thank you for your review');
  });

  await step('the review is on the page', async () => {
    const shown = page.getByText(REVIEW_TITLE, { exact: true });
    const deadline = Date.now() + 5_000;
    while (!(await shown.first().isVisible())) {
      if (Date.now() > deadline) fail(`the review "${REVIEW_TITLE}" is not on ${productPath} 5 s after posting`);
      await page.waitForTimeout(500);
      await visit(page, productPath);
    }
    await check(page, 'review-posted');
  });

  await step('account', async () => {
    await visit(page, '/account');
    await expectHeader(page, { signedIn: true });
    await check(page, 'account');
  });

  await step('account orders', async () => {
    await visit(page, '/account/orders');
    await check(page, 'account-orders');
  });

  await step('register, signed out', async () => {
    const fresh = await newPage(browser);
    await visit(fresh.page, '/register');
    await expectHeader(fresh.page, { signedIn: false });
    for (const label of ['Name', 'Email', 'Password']) {
      await expectVisible(field(fresh.page, label), `the input "${label}" of the registration form`);
    }
    await expectVisible(button(fresh.page, 'Create account'), 'the button "Create account"');
    await check(fresh.page, 'register');
    await fresh.context.close();
  });
});
