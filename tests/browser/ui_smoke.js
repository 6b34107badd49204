// node ui_smoke.js URL PDF OUT_DIR — uploads a real PDF in the running UI, searches it, checks the screen,
// and saves screenshots. Uses Debian's chromium (no browser download).
const { chromium } = require('playwright-core');
const [url, pdf, out] = process.argv.slice(2);
let page = null;  // kept for a screenshot of what was on screen when a step failed
(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await page.goto(url);
  await page.getByRole('heading', { name: 'Library' }).waitFor({ timeout: 60000 });
  await page.locator('input[type=file]').setInputFiles(pdf);
  // the uploader sends the file to the server on its own; clicking Ingest before it lists the file submits none
  await page.getByTestId('stForm').getByText(require('path').basename(pdf)).first().waitFor({ timeout: 60000 });
  await page.getByTestId('stForm').getByRole('button', { name: 'Ingest' }).click();
  await page.getByText(/ingested, \d+ pages/).waitFor({ timeout: 120000 });
  await page.getByText('text layer: 3').waitFor({ state: 'attached', timeout: 30000 });  // canvas grid cell
  await page.screenshot({ path: `${out}/library.png`, fullPage: true });
  await page.locator('[data-testid="stSidebar"]').getByText('Search', { exact: true }).click();
  await page.getByRole('heading', { name: 'Search' }).waitFor({ timeout: 30000 });
  const box = page.getByLabel('Question');
  await box.fill('matrix inverse');
  await page.getByTestId('stForm').getByRole('button', { name: 'Search' }).click();
  await page.getByText(/refcard-a4\.pdf · page \d/).first().waitFor({ timeout: 60000 });
  const images = await page.locator('[data-testid="stImage"] img').count();
  if (images < 1) throw new Error(`no page thumbnails on screen (${images})`);
  // every thumbnail really loaded (decoded, non-empty), not just an <img> element
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll('[data-testid="stImage"] img')];
    return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 100);
  }, null, { timeout: 30000 }).catch(async e => {
    const info = await page.evaluate(() => [...document.querySelectorAll('[data-testid="stImage"] img')]
      .map(i => ({ src: i.src.slice(0, 80), complete: i.complete, w: i.naturalWidth })));
    throw new Error(`thumbnails did not load: ${JSON.stringify(info)}`);
  });
  await page.screenshot({ path: `${out}/search.png`, fullPage: true });
  await page.locator('[data-testid="stSidebar"]').getByText('Ask', { exact: true }).click();
  await page.getByText(/PAGELENS_VLM_URL/).waitFor({ timeout: 30000 });
  await page.screenshot({ path: `${out}/ask-unconfigured.png`, fullPage: true });
  await page.locator('[data-testid="stSidebar"]').getByText('Jobs', { exact: true }).click();
  await page.getByRole('heading', { name: 'Jobs' }).waitFor({ timeout: 30000 });
  await page.getByText(/No jobs yet|ingest|extract/).first().waitFor({ timeout: 30000 });
  await page.screenshot({ path: `${out}/jobs.png`, fullPage: true });
  const errors = await page.getByText('Traceback').count();
  if (errors) throw new Error('a traceback is on screen');
  console.log(`ok: ${images} thumbnails`);
  await browser.close();
})().catch(async e => {
  console.error(e);
  if (page) await page.screenshot({ path: `${out}/failure.png`, fullPage: true }).catch(() => {});
  process.exit(1);
});
