import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { chromium, type Browser, type Page } from 'playwright-core';

/** Debian's chromium (installed by .ci/run), headless; CHROMIUM_PATH names another. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
}

/** Opens a page, collecting console errors, page errors and the URLs it requests; `offline` aborts every http(s) request. */
export async function openPage(browser: Browser, url: string, opts: { offline?: boolean } = {}): Promise<{ page: Page; errors: string[]; requests: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  const requests: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('request', (r) => requests.push(r.url()));
  if (opts.offline) await page.route(/^https?:/, (route) => route.abort());
  await page.goto(url);
  return { page, errors, requests };
}

/** Every `.plot` once drawn: its id, caption, the marks its chart says it has and the marks of its main layer in the SVG. */
export async function plotMarks(page: Page): Promise<{ id: string; title: string; expected: number; drawn: number }[]> {
  await page.waitForFunction(() => (window as unknown as { plotsDrawn?: boolean }).plotsDrawn === true, undefined, { timeout: 30_000 });
  return page.$$eval('.plot', (els) =>
    els.map((el) => ({
      id: el.id,
      title: el.parentElement?.querySelector('figcaption')?.textContent ?? '',
      expected: Number(el.getAttribute('data-marks')),
      drawn: el.querySelectorAll(`svg g.mark-${el.getAttribute('data-mark-type')}.role-mark path`).length,
    })),
  );
}

/** Serves `app` (a Hono app's fetch) on a free loopback port: its base URL, and how to close it. */
export async function serveOnLoopback(fetch: (req: Request) => Response | Promise<Response>): Promise<{ base: string; close(): Promise<void> }> {
  const server = serve({ fetch, port: 0, hostname: '127.0.0.1' });
  await new Promise((r) => server.once('listening', r));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
