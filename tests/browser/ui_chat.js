// node ui_chat.js URL OUT_DIR — in the running UI (an ingested refcard-a4.pdf, the offline words VLM): asks a
// question and a follow-up on the Ask page's chat, opens a citation, checks its page is drawn, saves a screenshot.
const { chromium } = require('playwright-core');
const [url, out] = process.argv.slice(2);
let page = null;
(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 2300 } });
  await page.goto(url);
  await page.getByRole('heading', { name: 'Library' }).waitFor({ timeout: 60000 });
  await page.locator('[data-testid="stSidebar"]').getByText('Ask', { exact: true }).click();
  await page.getByRole('heading', { name: 'Ask' }).waitFor({ timeout: 30000 });
  const ask = async (q, turns) => {
    const box = page.getByTestId('stChatInputTextArea');
    await box.fill(q);
    await box.press('Enter');
    await page.waitForFunction(n => document.querySelectorAll('[data-testid="stChatMessage"]').length >= n,
                               2 * turns, { timeout: 120000 });
  };
  await ask('inverse of a matrix', 1);
  await ask('what about the complex conjugate transpose?', 2);
  await page.getByText(/searched as: /).first().waitFor({ timeout: 30000 });
  await page.getByRole('button', { name: 'Open' }).first().click();
  await page.getByText(/· citation 1/).first().waitFor({ timeout: 60000 });
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll('[data-testid="stImage"] img')];
    return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 100);
  }, null, { timeout: 30000 });
  await page.screenshot({ path: `${out}/ask-chat.png`, fullPage: true });
  if (await page.getByText('Traceback').count()) throw new Error('a traceback is on screen');
  const n = await page.locator('[data-testid="stChatMessage"]').count();
  console.log(`ok: ${n} chat messages`);
  await browser.close();
})().catch(async e => {
  console.error(e);
  if (page) await page.screenshot({ path: `${out}/failure.png`, fullPage: true }).catch(() => {});
  process.exit(1);
});
