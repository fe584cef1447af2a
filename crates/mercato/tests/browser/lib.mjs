// Shared helpers of the browser scenarios (crates/mercato/tests/browser/*.mjs).
//
// Each scenario is a Node script, run as `node crates/mercato/tests/browser/<name>.mjs`
// with its inputs in environment variables (MERCATO_BASE_URL and the ones the
// scenario names). It drives Debian's Chromium (/usr/bin/chromium, or
// MERCATO_CHROMIUM) through playwright-core, which downloads no browser.
// Install what it needs with scripts/browser-tools.
//
//   scenario('customer-buys', async () => {
//     const { page } = await launch();
//     await step('home page', async () => {
//       await visit(page, '/');
//       await check(page, 'home');
//     });
//     result('order_id', id);               // `order_id=<id>` on stdout
//   });
//
// check(page, name) takes a full-page screenshot into the artifacts folder
// (MERCATO_BROWSER_ARTIFACTS, default <repo>/target/browser-artifacts) as
// <scenario>-<nn>-<name>.png, runs axe-core (WCAG 2 A and AA) and fails on any
// violation of impact serious or critical, and fails if the page has logged a
// console error, thrown an uncaught error or seen a response of status 500 or
// more (every page that launch() and newPage() make is watched). A failed step
// prints which step, the page's URL and a screenshot of it, and the scenario
// exits non-zero. Progress goes to stderr; stdout carries only the key=value
// lines of result().
//
// The pages have a strict Content-Security-Policy (script-src 'self'). axe is
// injected with page.evaluate of its source, which the DevTools protocol runs
// whatever the page's CSP says; page.addScriptTag({content}) would add an inline
// <script> that the CSP blocks. So contexts keep the CSP enforced
// (no bypassCSP), and a page that breaks its own CSP shows up as a console
// error.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const HERE = path.dirname(fileURLToPath(import.meta.url));

/** The repository's root (this file is in crates/mercato/tests/browser). */
export const REPO_ROOT = path.resolve(HERE, '..', '..', '..', '..');

export const CHROMIUM = process.env.MERCATO_CHROMIUM || '/usr/bin/chromium';

export const ARTIFACTS = path.resolve(
  process.env.MERCATO_BROWSER_ARTIFACTS || path.join(REPO_ROOT, 'target', 'browser-artifacts'),
);

/** The desktop viewport every context gets unless told otherwise. */
export const DESKTOP = { viewport: { width: 1280, height: 800 } };

/** A phone: 390x844 CSS pixels, touch, mobile layout. */
export const PHONE = {
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
};

/** The WCAG tags axe runs with; violations of these impacts fail a check. */
export const AXE_TAGS = ['wcag2a', 'wcag2aa'];
export const AXE_FAILING_IMPACTS = ['serious', 'critical'];

/** How long one action or wait may take by default, in milliseconds. */
export const ACTION_TIMEOUT = 10_000;
export const NAVIGATION_TIMEOUT = 15_000;

// ---------------------------------------------------------------------------
// Inputs

/** An environment variable the scenario needs; stops with a clear message when unset. */
export function need(name, what = '') {
  const value = process.env[name];
  if (value === undefined || value === '') {
    throw new ScenarioError(`missing environment variable ${name}${what ? ` (${what})` : ''}`);
  }
  return value;
}

/** MERCATO_BASE_URL without a trailing slash, e.g. http://127.0.0.1:41234. */
export function baseUrl() {
  const raw = need('MERCATO_BASE_URL', 'the server, e.g. http://127.0.0.1:41234');
  let parsed;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ScenarioError(`MERCATO_BASE_URL is not a URL: ${raw}`);
  }
  return parsed.origin;
}

/** An absolute URL of `path` on the server. */
export function url(pathAndQuery) {
  return new URL(pathAndQuery, baseUrl() + '/').href;
}

// ---------------------------------------------------------------------------
// The scenario: its name, its steps, its failure report

class ScenarioError extends Error {}

const state = {
  name: path.basename(process.argv[1] || 'scenario', '.mjs'),
  shots: 0,
  step: null,
  steps: 0,
  browsers: new Set(),
  pages: [], // every page made through this file, the latest last
};

/** Fails the scenario with `message` (no stack trace in the report). */
export function fail(message) {
  throw new ScenarioError(message);
}

function log(line) {
  process.stderr.write(`[${state.name}] ${line}\n`);
}

/** A line `key=value` on stdout, for the Rust harness to read. */
export function result(key, value) {
  process.stdout.write(`${key}=${value}\n`);
}

/**
 * Runs the scenario: `body` does the work with step(), check() and friends.
 * Sets the exit code (0 on success, 1 on failure) and closes every browser.
 */
export async function scenario(name, body) {
  state.name = name;
  const limitSecs = Number(process.env.MERCATO_BROWSER_TIMEOUT_SECS || 180);
  const watchdog = setTimeout(() => {
    log(`FAILED: the scenario did not finish within ${limitSecs} s (step: ${state.step ?? 'none'})`);
    process.exit(2);
  }, limitSecs * 1000);
  watchdog.unref();
  const started = Date.now();
  try {
    await body();
    for (const page of livePages()) assertNoProblems(page);
    log(`passed: ${state.steps} steps, ${state.shots} screenshots in ${ARTIFACTS} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    process.exitCode = 0;
  } catch (error) {
    await report(error);
    process.exitCode = 1;
  } finally {
    clearTimeout(watchdog);
    for (const browser of state.browsers) await browser.close().catch(() => {});
  }
}

/** One named step: logged when it passes, named in the report when it fails. */
export async function step(title, body) {
  state.step = title;
  state.steps += 1;
  const started = Date.now();
  await body();
  for (const page of livePages()) assertNoProblems(page);
  log(`ok ${String(state.steps).padStart(2, '0')} ${title} (${Date.now() - started} ms)`);
  state.step = null;
}

function livePages() {
  return state.pages.filter((p) => !p.isClosed());
}

async function report(error) {
  const page = livePages().at(-1);
  const lines = [`FAILED${state.step ? ` at step "${state.step}"` : ''}`];
  if (page) {
    lines.push(`  page:       ${page.url()}`);
    const alert = await textOf(page.getByRole('alert'));
    if (alert) lines.push(`  alert:      ${alert}`);
    try {
      const file = await screenshot(page, `failed-${state.step ?? 'scenario'}`);
      lines.push(`  screenshot: ${file}`);
    } catch (e) {
      lines.push(`  screenshot: could not be taken (${firstLine(e.message)})`);
    }
  }
  lines.push('  error:      ' + describeError(error).split('\n').join('\n              '));
  log(lines.join('\n'));
}

// The error's message without terminal colours, and for an unexpected error
// the lines of its stack that are in the scenario scripts.
function describeError(error) {
  if (error instanceof ScenarioError) return error.message;
  const plain = (t) => String(t).replace(/\x1b\[[0-9;]*m/g, '');
  const message = plain(error?.message ?? error).trimEnd();
  const frames = plain(error?.stack ?? '')
    .split('\n')
    .filter((l) => /^\s+at /.test(l) && l.includes(HERE) && !l.includes('/node_modules/'))
    .map((l) => '  ' + l.trim().replace(HERE + path.sep, ''));
  return frames.length ? `${message}\n${frames.join('\n')}` : message;
}

async function textOf(locator) {
  try {
    const texts = await locator.allInnerTexts();
    return texts.map((t) => t.trim()).filter(Boolean).join(' | ');
  } catch {
    return '';
  }
}

function firstLine(text) {
  return String(text).split('\n')[0];
}

// ---------------------------------------------------------------------------
// Browser, contexts and pages

/**
 * Starts Debian's Chromium headless and opens a context and a page, desktop
 * size (1280x800) unless `options` says otherwise, e.g. launch(PHONE).
 * Returns { browser, context, page }.
 */
export async function launch(options = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    fail(`no Chromium at ${CHROMIUM}: run scripts/browser-tools (apt-get install chromium) or set MERCATO_CHROMIUM`);
  }
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Tests may run as root, where Chromium's sandbox cannot start.
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  state.browsers.add(browser);
  const { context, page } = await newPage(browser, options);
  return { browser, context, page };
}

/**
 * A fresh context (own cookies, so signed out unless `storageState` is given)
 * and a page in it, watched for errors. `options` are Playwright context
 * options over the desktop defaults: newPage(browser, PHONE),
 * newPage(browser, { ...PHONE, storageState: await context.storageState() }).
 */
export async function newPage(browser, options = {}) {
  const context = await browser.newContext({
    ...DESKTOP,
    locale: 'en-US',
    timezoneId: 'UTC',
    colorScheme: 'light',
    reducedMotion: 'reduce',
    serviceWorkers: 'block',
    ...options,
  });
  context.setDefaultTimeout(ACTION_TIMEOUT);
  context.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT);
  const page = await context.newPage();
  watch(page);
  state.pages.push(page);
  return { context, page };
}

/** Phone-sized context and page in `browser`, carrying over `from`'s cookies when given. */
export async function phonePage(browser, from = undefined) {
  const storageState = from ? await from.storageState() : undefined;
  return newPage(browser, { ...PHONE, ...(storageState ? { storageState } : {}) });
}

// ---------------------------------------------------------------------------
// Errors seen by a page

const problems = new WeakMap();

/**
 * Records the page's console errors, uncaught errors and responses of status
 * 500 or more; step(), check() and the end of the scenario fail on any.
 * `ignore` is a list of regular expressions of console texts to let pass.
 */
export function watch(page, { ignore = [] } = {}) {
  if (problems.has(page)) return;
  const seen = [];
  problems.set(page, seen);
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    const source = msg.location()?.url ?? '';
    // Chromium asks for /favicon.ico by itself and logs its 404 as an error.
    if (/\/favicon\.ico$/.test(source)) return;
    if (ignore.some((re) => re.test(text))) return;
    const where = source ? ` (${source}${msg.location().lineNumber ? `:${msg.location().lineNumber}` : ''})` : '';
    seen.push(`console error on ${page.url()}: ${text}${where}`);
  });
  page.on('pageerror', (error) => {
    seen.push(`uncaught error on ${page.url()}: ${error.message}`);
  });
  page.on('response', (response) => {
    if (response.status() >= 500) {
      seen.push(`${response.request().method()} ${response.url()} answered ${response.status()} ${response.statusText()}`);
    }
  });
}

/** Throws (and forgets them) if the page has seen errors since the last call. */
export function assertNoProblems(page) {
  const seen = problems.get(page);
  if (!seen || seen.length === 0) return;
  const list = seen.splice(0, seen.length);
  fail(`the page saw ${list.length} error(s):\n- ${list.join('\n- ')}`);
}

// ---------------------------------------------------------------------------
// Checks: screenshot, accessibility, forms

function slug(text) {
  return String(text).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60) || 'page';
}

/** A full-page screenshot into the artifacts folder; returns its path. */
export async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  state.shots += 1;
  const file = path.join(ARTIFACTS, `${slug(state.name)}-${String(state.shots).padStart(2, '0')}-${slug(name)}.png`);
  await page.screenshot({ path: file, fullPage: true, animations: 'disabled', caret: 'hide' });
  return file;
}

let axeSource;
function axeScript() {
  axeSource ??= fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  return axeSource;
}

/**
 * Runs axe-core in the page (WCAG 2 A and AA) and returns its violations:
 * [{ id, impact, help, helpUrl, targets: [selector…] }].
 */
export async function axeViolations(page) {
  const loaded = await page.evaluate(() => typeof window.axe === 'object');
  if (!loaded) {
    // Evaluated through the DevTools protocol: allowed under script-src 'self',
    // unlike an inline <script> (page.addScriptTag({content})).
    await page.evaluate(axeScript());
  }
  return page.evaluate(async (tags) => {
    const results = await window.axe.run(document, {
      runOnly: { type: 'tag', values: tags },
      resultTypes: ['violations'],
    });
    return results.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      helpUrl: v.helpUrl,
      targets: v.nodes.map((n) => n.target.join(' ')),
    }));
  }, AXE_TAGS);
}

function describeViolations(violations) {
  return violations
    .map((v) => `${v.id} [${v.impact}] ${v.help}\n    ${v.targets.slice(0, 8).join('\n    ')}${v.targets.length > 8 ? `\n    … and ${v.targets.length - 8} more` : ''}`)
    .join('\n  ');
}

/** Every form that posts carries a non-empty hidden input `csrf`. */
export async function assertCsrf(page) {
  const missing = await page.evaluate(() =>
    [...document.querySelectorAll('form')]
      .filter((f) => (f.getAttribute('method') || 'get').toLowerCase() === 'post')
      .filter((f) => !f.querySelector('input[type=hidden][name=csrf][value]:not([value=""])'))
      .map((f) => `<form action="${f.getAttribute('action') ?? ''}"> (button: ${(f.querySelector('button')?.textContent || '').trim() || 'none'})`),
  );
  if (missing.length) fail(`forms without a hidden input csrf on ${page.url()}:\n- ${missing.join('\n- ')}`);
}

/**
 * The check of a page as it is now: (a) a full-page screenshot
 * <scenario>-<nn>-<name>.png; (b) axe with WCAG 2 A and AA, failing on
 * serious or critical violations (lesser ones are printed); every posting form
 * has its csrf input; and no console error, uncaught error or 5xx so far.
 */
export async function check(page, name) {
  await page.waitForLoadState('load');
  const file = await screenshot(page, name);
  const violations = await axeViolations(page);
  const failing = violations.filter((v) => AXE_FAILING_IMPACTS.includes(v.impact));
  const lesser = violations.filter((v) => !AXE_FAILING_IMPACTS.includes(v.impact));
  if (lesser.length) log(`axe on ${name} (${page.url()}), not failing:\n  ${describeViolations(lesser)}`);
  if (failing.length) {
    fail(`axe found ${failing.length} serious or critical accessibility violation(s) on ${page.url()} (screenshot ${file}):\n  ${describeViolations(failing)}`);
  }
  await assertCsrf(page);
  assertNoProblems(page);
  const shown = path.relative(process.cwd(), file);
  log(`   checked ${name}: ${shown.startsWith('..') ? file : shown}`);
  return file;
}

// ---------------------------------------------------------------------------
// Navigation and waiting

/** Goes to `path` on the server; fails unless it answers below 400. */
export async function visit(page, pathAndQuery) {
  const target = url(pathAndQuery);
  const response = await page.goto(target, { waitUntil: 'load' });
  if (response && response.status() >= 400) {
    fail(`GET ${target} answered ${response.status()} ${response.statusText()}`);
  }
  return response;
}

/** Waits for the page's URL to match `pattern` (a RegExp on the path and query); returns the match. */
export async function waitForPath(page, pattern, timeout = NAVIGATION_TIMEOUT) {
  try {
    await page.waitForURL((u) => pattern.test(u.pathname + u.search), { timeout, waitUntil: 'load' });
  } catch {
    fail(`expected to arrive at a page matching ${pattern} within ${timeout} ms; still at ${page.url()}`);
  }
  const u = new URL(page.url());
  return (u.pathname + u.search).match(pattern);
}

/** Waits for `locator` to be visible; fails naming `what`. */
export async function expectVisible(locator, what, timeout = ACTION_TIMEOUT) {
  try {
    await locator.first().waitFor({ state: 'visible', timeout });
  } catch {
    fail(`expected ${what} to be visible within ${timeout} ms`);
  }
  return locator.first();
}

/**
 * Waits until `locator`'s text contains `wanted` (a string or RegExp), polling
 * every 250 ms; `reload: true` reloads the page between polls (for pages that
 * do not refresh themselves); `failOn` is a RegExp of texts that end the wait
 * at once. Returns the text.
 */
export async function waitForText(page, locator, wanted, { timeout = ACTION_TIMEOUT, reload = false, failOn, what = 'the element' } = {}) {
  const matches = (text) => (typeof wanted === 'string' ? text.includes(wanted) : wanted.test(text));
  const deadline = Date.now() + timeout;
  let text = '';
  let lastReload = Date.now();
  for (;;) {
    text = ((await locator.first().textContent({ timeout: 1000 }).catch(() => null)) ?? '').replace(/\s+/g, ' ').trim();
    if (matches(text)) return text;
    if (failOn && failOn.test(text)) fail(`${what} says "${text}", waiting for ${wanted}`);
    if (Date.now() > deadline) fail(`${what} did not show ${wanted} within ${timeout} ms; it says "${text}"`);
    if (reload && Date.now() - lastReload >= 1000) {
      await page.reload({ waitUntil: 'load' }).catch(() => {});
      lastReload = Date.now();
    } else {
      await page.waitForTimeout(250);
    }
  }
}

// ---------------------------------------------------------------------------
// Forms and the page contract

/** Fills a text input, or picks in a select the option whose value or label is `value`. */
export async function fillOrSelect(locator, value) {
  const tag = await locator.evaluate((el) => el.tagName.toLowerCase());
  if (tag === 'select') {
    const options = await locator.evaluate((el) => [...el.options].map((o) => ({ value: o.value, label: o.label.trim() })));
    const option = options.find((o) => o.value === value) || options.find((o) => o.label === value);
    if (!option) fail(`the select has no option "${value}" (it has: ${options.map((o) => o.label || o.value).join(', ')})`);
    await locator.selectOption(option.value);
  } else {
    await locator.fill(value);
  }
}

/** In a select, keeps the chosen option if it has a value, else picks the first option that has one. */
export async function selectSomething(locator) {
  const values = await locator.evaluate((el) => [el.value, ...[...el.options].filter((o) => !o.disabled).map((o) => o.value)]);
  const value = values.find((v) => v !== '');
  if (value === undefined) fail('the select has no option to choose');
  await locator.selectOption(value);
  return value;
}

/** The form input labelled exactly `label`. */
export function field(scope, label) {
  return scope.getByLabel(label, { exact: true });
}

export function button(scope, name) {
  return scope.getByRole('button', { name, exact: true });
}

export function link(scope, name) {
  return scope.getByRole('link', { name, exact: true });
}

/** Text of the flash messages (role=status) and errors (role=alert) now on the page. */
export async function messages(page) {
  return { status: await textOf(page.getByRole('status')), alert: await textOf(page.getByRole('alert')) };
}

/** Waits for a flash message (role=status) containing `text`. */
export async function expectStatus(page, text, timeout = ACTION_TIMEOUT) {
  try {
    await page.getByRole('status').filter({ hasText: text }).first().waitFor({ state: 'visible', timeout });
  } catch {
    const { status, alert } = await messages(page);
    fail(`expected a message (role=status) saying "${text}" on ${page.url()}; status: "${status}"${alert ? `, alert: "${alert}"` : ''}`);
  }
}

/** The header of a signed-in visitor: button "Sign out" and link "Account". */
export async function expectSignedIn(page) {
  await expectVisible(button(page, 'Sign out'), 'the button "Sign out" (signed in)');
  await expectVisible(link(page, 'Account'), 'the link "Account" (signed in)');
}

/** The header of a visitor: link "Mercato", the search form, link "Cart", link "Sign in". */
export async function expectHeader(page, { signedIn = false } = {}) {
  await expectVisible(link(page, 'Mercato'), 'the link "Mercato" (home)');
  await expectVisible(page.getByRole('search').getByLabel('Search products', { exact: true }), 'the search box "Search products" in a role=search form');
  await expectVisible(link(page, 'Cart'), 'the link "Cart"');
  if (signedIn) await expectSignedIn(page);
  else await expectVisible(link(page, 'Sign in'), 'the link "Sign in" (signed out)');
}

/**
 * Signs in at /signin (or /signin?next=…) with `email` and `password`, checking
 * the sign-in page as `checkName` when given; ends on the page it redirects to.
 */
export async function signIn(page, email, password, { next, checkName } = {}) {
  await visit(page, next ? `/signin?next=${encodeURIComponent(next)}` : '/signin');
  await fillSignIn(page, email, password, { next, checkName });
}

/** Fills and sends the sign-in form of the page that is open (/signin). */
export async function fillSignIn(page, email, password, { next, checkName } = {}) {
  await expectVisible(field(page, 'Email'), 'the input "Email" of the sign-in form');
  if (checkName) await check(page, checkName);
  await field(page, 'Email').fill(email);
  await field(page, 'Password').fill(password);
  await button(page, 'Sign in').click();
  // Either the redirect away from /signin, or the form again with an alert.
  const left = await Promise.race([
    page.waitForURL((u) => u.pathname !== '/signin', { timeout: NAVIGATION_TIMEOUT, waitUntil: 'load' }).then(() => true, () => false),
    page.getByRole('alert').first().waitFor({ state: 'visible', timeout: NAVIGATION_TIMEOUT }).then(() => false, () => false),
  ]);
  if (!left) {
    const { alert } = await messages(page);
    fail(`signing in as ${email} did not leave /signin${alert ? `; the page says: "${alert}"` : ''}`);
  }
  if (next && new URL(page.url()).pathname !== next.split('?')[0]) {
    fail(`signed in with next=${next} but arrived at ${page.url()}`);
  }
  await expectSignedIn(page);
}
