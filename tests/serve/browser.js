// The page of `chai serve` in headless Chromium, driven through the DevTools protocol over a pipe
// (--remote-debugging-pipe: no port, no npm package). Run by tests/cli/test_serve_browser.sh:
//
//   node tests/serve/browser.js URL SCREENSHOT.png [PHONE.png]
//
// Opens the page; with the keyboard only (Tab, Space, Enter) ticks "Quick" and starts the job;
// watches progress arrive from the event stream and the results table fill; checks that both
// charts drew pixels, that no console error or exception happened, that at a phone's width
// (390 px) nothing overflows the window; writes the screenshots. Exit 0 on success, 1 with a
// message on failure.
'use strict';
const {spawn} = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const [url, shotPath, phonePath] = process.argv.slice(2);
if (!url || !shotPath) {
  console.error('usage: node browser.js URL SCREENSHOT.png [PHONE.png]');
  process.exit(2);
}
const chromium = process.env.CHROMIUM || '/usr/bin/chromium';
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'chai-browser-'));
const browser = spawn(chromium, [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--remote-debugging-pipe', `--user-data-dir=${profile}`, 'about:blank',
], {stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe']});
let browserLog = '';
browser.stdio[2].on('data', (d) => { browserLog += d; });

const toBrowser = browser.stdio[3], fromBrowser = browser.stdio[4];
let nextId = 1;
const pending = new Map();
const listeners = [];
let inbox = '';
fromBrowser.on('data', (chunk) => {
  inbox += chunk.toString('utf8');
  let at;
  while ((at = inbox.indexOf('\0')) >= 0) {
    const msg = JSON.parse(inbox.slice(0, at));
    inbox = inbox.slice(at + 1);
    if (msg.id && pending.has(msg.id)) {
      const {resolve, reject, method} = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) reject(new Error(`${method}: ${msg.error.message}`));
      else resolve(msg.result);
    } else if (msg.method) {
      for (const l of listeners) l(msg);
    }
  }
});

function send(method, params = {}, sessionId) {
  const id = nextId++;
  const msg = {id, method, params};
  if (sessionId) msg.sessionId = sessionId;
  toBrowser.write(JSON.stringify(msg) + '\0');
  return new Promise((resolve, reject) => pending.set(id, {resolve, reject, method}));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let failed = false;
function check(ok, what) {
  if (ok) {
    console.log('ok   ' + what);
  } else {
    console.log('FAIL ' + what);
    failed = true;
  }
}

async function main() {
  const {targetId} = await send('Target.createTarget', {url: 'about:blank'});
  const {sessionId} = await send('Target.attachToTarget', {targetId, flatten: true});
  const s = (method, params) => send(method, params, sessionId);
  const errors = [];
  listeners.push((m) => {
    if (m.sessionId !== sessionId) return;
    if (m.method === 'Runtime.exceptionThrown') {
      errors.push('exception: ' + JSON.stringify(m.params.exceptionDetails).slice(0, 300));
    } else if (m.method === 'Runtime.consoleAPICalled' && m.params.type === 'error') {
      errors.push('console.error: ' + JSON.stringify(m.params.args).slice(0, 300));
    } else if (m.method === 'Log.entryAdded' && m.params.entry.level === 'error') {
      errors.push('log: ' + m.params.entry.text + ' ' + (m.params.entry.url || ''));
    }
  });
  await s('Runtime.enable');
  await s('Log.enable');
  await s('Page.enable');
  await s('Emulation.setDeviceMetricsOverride',
          {width: 1100, height: 1500, deviceScaleFactor: 1, mobile: false});
  const evaluate = async (expr) => {
    const r = await s('Runtime.evaluate', {expression: expr, returnByValue: true});
    if (r.exceptionDetails) throw new Error('evaluate ' + expr + ': ' + r.exceptionDetails.text);
    return r.result.value;
  };
  const waitFor = async (expr, seconds, what) => {
    for (let i = 0; i < seconds * 10; i++) {
      if (await evaluate(expr)) return true;
      await sleep(100);
    }
    check(false, what + ' (waited ' + seconds + ' s)');
    return false;
  };
  const key = async (name, code, keyCode, text) => {
    await s('Input.dispatchKeyEvent', {type: 'rawKeyDown', key: name, code, windowsVirtualKeyCode: keyCode});
    if (text) await s('Input.dispatchKeyEvent', {type: 'char', key: name, text});
    await s('Input.dispatchKeyEvent', {type: 'keyUp', key: name, code, windowsVirtualKeyCode: keyCode});
  };

  await s('Page.navigate', {url});
  check(await waitFor("document.querySelectorAll('#model option').length > 0 && " +
                      "document.querySelectorAll('#configs input').length > 0", 15,
                      'the form is filled from /models'), 'the form is filled from /models');

  // The keyboard alone: Tab to "Quick", Space ticks it, Tab to Start, Enter submits.
  const order = [];
  let active = '';
  for (let i = 0; i < 40 && active !== 'quick'; i++) {
    await key('Tab', 'Tab', 9);
    active = await evaluate('document.activeElement && document.activeElement.id');
    order.push(active);
  }
  check(active === 'quick', 'Tab reaches the Quick checkbox (' + order.join(' ') + ')');
  check(order.indexOf('model') >= 0 && order.indexOf('model') < order.indexOf('criterion'),
        'Tab order: model before criterion');
  await key(' ', 'Space', 32, ' ');
  check(await evaluate("document.getElementById('quick').checked"), 'Space ticks Quick');
  await key('Tab', 'Tab', 9);
  check(await evaluate("document.activeElement.id") === 'start', 'Tab then reaches Start');
  await key('Enter', 'Enter', 13, '\r');

  check(await waitFor("!document.getElementById('job').hidden", 15, 'the job appears'),
        'Enter starts a job');
  let sawProgress = false, sawPartial = false;
  for (let i = 0; i < 600; i++) {
    const st = await evaluate(`({state: document.getElementById('job-state').textContent,
      value: document.getElementById('job-progress').value,
      max: document.getElementById('job-progress').max,
      stage: document.getElementById('job-stage').textContent,
      rows: document.querySelectorAll('#results tbody tr').length})`);
    if (st.value > 0 && st.value < st.max && / of /.test(st.stage)) sawProgress = true;
    if (st.rows > 0 && st.state === 'running') sawPartial = true;
    if (st.state === 'done') break;
    await sleep(100);
  }
  check(sawProgress, 'live progress from the event stream (the bar moved before the end)');
  check(sawPartial, 'results arrive while the job runs');
  check(await evaluate("document.getElementById('job-state').textContent") === 'done',
        'the job ends done');
  const rows = await evaluate("document.querySelectorAll('#results tbody tr').length");
  check(rows >= 1, `the results table has rows (${rows})`);
  check(await evaluate("document.getElementById('job-what').textContent.includes('quick')"),
        'the job was started with quick');
  await waitFor("document.getElementById('report').getAttribute('aria-disabled') === 'false'", 5,
                'the report link is enabled');
  await sleep(300);
  const painted = await evaluate(`[...document.querySelectorAll('canvas')].map((c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
    return n;
  })`);
  check(painted.length === 2 && painted.every((n) => n > 100),
        'both charts drew pixels (' + painted.join(', ') + ')');
  const jobsListed = await evaluate("document.querySelectorAll('#jobs tbody tr').length");
  check(jobsListed >= 1, 'the job is listed under earlier jobs');

  let shot = await s('Page.captureScreenshot', {format: 'png', captureBeyondViewport: false});
  fs.writeFileSync(shotPath, Buffer.from(shot.data, 'base64'));
  console.log('wrote ' + shotPath);

  await s('Emulation.setDeviceMetricsOverride',
          {width: 390, height: 844, deviceScaleFactor: 1, mobile: true});
  await sleep(300);
  const widths = await evaluate('({doc: document.documentElement.scrollWidth, win: innerWidth})');
  check(widths.doc <= widths.win + 1,
        `at a phone's width nothing overflows (page ${widths.doc} px, window ${widths.win} px)`);
  if (phonePath) {
    shot = await s('Page.captureScreenshot', {format: 'png'});
    fs.writeFileSync(phonePath, Buffer.from(shot.data, 'base64'));
    console.log('wrote ' + phonePath);
  }
  check(errors.length === 0, 'no console errors or exceptions' +
        (errors.length ? ':\n  ' + errors.join('\n  ') : ''));
}

const timer = setTimeout(() => {
  console.log('FAIL the browser test took longer than 120 s');
  browser.kill('SIGKILL');
  process.exit(1);
}, 120000);

main().catch((e) => {
  console.log('FAIL ' + e.message);
  failed = true;
}).finally(async () => {
  clearTimeout(timer);
  try { await Promise.race([send('Browser.close'), sleep(2000)]); } catch (e) { /* gone */ }
  if (browser.exitCode === null) {
    const gone = new Promise((r) => browser.once('exit', r));
    browser.kill('SIGKILL');
    await gone;
  }
  try { fs.rmSync(profile, {recursive: true, force: true}); } catch (e) { /* left in tmp */ }
  if (failed && browserLog) console.log('chromium said:\n' + browserLog.slice(-2000));
  process.exit(failed ? 1 : 0);
});
