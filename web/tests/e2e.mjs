// Drives the web client in headless Chromium against a real `paraph serve --demo` (started by
// tests/web.rs, which passes its address and the demo tokens in the environment). Documents
// arrive through the real `paraph submit` command, and one through the submitter's page. Exits non-zero at the first failed check.
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const URL = env("PARAPH_WEB_URL");
const ADDR = env("PARAPH_WEB_ADDR");
const BIN = env("PARAPH_WEB_BIN");
const SHOTS = env("PARAPH_WEB_SHOTS");
const WORK = env("PARAPH_WEB_WORK");
const P12 = env("PARAPH_WEB_P12");
const PASS = env("PARAPH_WEB_P12_PASSWORD");
const tok = {
  finance: env("PARAPH_WEB_TOKEN_FINANCE"),
  carol: env("PARAPH_WEB_TOKEN_CAROL"),
  alice: env("PARAPH_WEB_TOKEN_ALICE"),
  bob: env("PARAPH_WEB_TOKEN_BOB"),
  other: env("PARAPH_WEB_TOKEN_OTHER"),
  auditor: env("PARAPH_WEB_TOKEN_AUDITOR"),
};
const TIMEOUT = 30000;

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

let n = 0;
/** `paraph submit` as the finance software; returns the new document id. */
function submit(title, amount) {
  const file = join(WORK, `doc-${++n}.txt`);
  writeFileSync(file, `${title}: ${amount} EUR to ACME\n`.repeat(50));
  const out = execFileSync(
    BIN,
    ["submit", file, "--type", "MANDATE", "--circuit", "demo", "--title", title, "--meta", `amount=${amount}`, "--meta", "beneficiary=ACME"],
    { env: { PATH: process.env.PATH, PARAPH_ADDR: ADDR, PARAPH_TOKEN: tok.finance }, encoding: "utf8", timeout: TIMEOUT, stdio: ["ignore", "pipe", "pipe"] },
  );
  const id = out.trim();
  check(/^[0-9a-f]{32}$/.test(id), `submitted "${title}" (${id})`);
  return id;
}

/** A small, valid one-page PDF (xref offsets computed). */
function pdf(title) {
  const text = `BT /F1 24 Tf 72 720 Td (${title}) Tj ET`;
  const objs = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
    `<< /Length ${text.length} >>\nstream\n${text}\nendstream`,
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
  ];
  let out = "%PDF-1.7\n";
  const offsets = [];
  objs.forEach((o, i) => {
    offsets.push(out.length);
    out += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = out.length;
  out += `xref\n0 ${objs.length + 1}\n0000000000 65535 f \n`;
  for (const off of offsets) out += `${String(off).padStart(10, "0")} 00000 n \n`;
  out += `trailer\n<< /Size ${objs.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return out;
}

/** `paraph submit` of a PDF contract, signed as PAdES; returns its id. */
function submitPdf(title) {
  const file = join(WORK, `contract-${++n}.pdf`);
  writeFileSync(file, pdf(title), "latin1");
  const out = execFileSync(
    BIN,
    ["submit", file, "--type", "CONTRACT", "--circuit", "demo", "--title", title, "--format", "pades"],
    { env: { PATH: process.env.PATH, PARAPH_ADDR: ADDR, PARAPH_TOKEN: tok.finance }, encoding: "utf8", timeout: TIMEOUT, stdio: ["ignore", "pipe", "pipe"] },
  );
  const id = out.trim();
  check(/^[0-9a-f]{32}$/.test(id), `submitted the PDF "${title}" (${id})`);
  return id;
}

/** `paraph approve` as carol. */
function approveAsCarol(id) {
  execFileSync(BIN, ["approve", id], {
    env: { PATH: process.env.PATH, PARAPH_ADDR: ADDR, PARAPH_TOKEN: tok.carol },
    encoding: "utf8",
    timeout: TIMEOUT,
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Europe/Paris wall time of `ms`, as a datetime-local value. */
function parisLocal(ms) {
  const p = new Intl.DateTimeFormat("en-GB", {
    timeZone: "Europe/Paris", hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
  }).formatToParts(new Date(ms));
  const g = (k) => p.find((x) => x.type === k).value;
  return `${g("year")}-${g("month")}-${g("day")}T${g("hour")}:${g("minute")}`;
}

mkdirSync(SHOTS, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.PARAPH_WEB_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const failures = [];
// The browser's own time zone is not Paris: the page must still show Paris time.
const context = await browser.newContext({ locale: "fr-FR", timezoneId: "Asia/Tokyo", viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(TIMEOUT);
page.on("console", (m) => {
  if (m.type() === "error") failures.push(`console error: ${m.text()}`);
});
page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
// Nothing but the server itself is ever requested.
page.on("request", (r) => {
  const u = r.url();
  // (The browser's own PDF viewer loads chrome:// resources: not network.)
  if (/^(https?|wss?):/.test(u) && !u.startsWith(URL)) failures.push(`foreign request: ${u}`);
});

/** Date and time as the page shows them: Europe/Paris. */
function paris(ms) {
  return new Intl.DateTimeFormat("fr-FR", { timeZone: "Europe/Paris", dateStyle: "short", timeStyle: "short" }).format(new Date(ms));
}

/** The form controls of the page that have no label (none should). */
async function unlabelled() {
  return page.evaluate(() =>
    [...document.querySelectorAll("input, select, textarea, button")]
      .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !(el.tagName === "BUTTON" && el.textContent.trim()))
      .map((el) => el.outerHTML),
  );
}

/** Whether the page fits its width at 200 % zoom (half the width), without horizontal scrolling. */
async function fitsAtDoubleZoom(what) {
  await page.setViewportSize({ width: 640, height: 900 });
  const [scroll, width] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  await page.setViewportSize({ width: 1280, height: 900 });
  check(scroll <= width, `${what} reads at 200 % zoom without horizontal scrolling (${scroll} <= ${width})`);
}

/** A PES V2 flow of two bordereaux of mandates (2 and 1 pieces at 120.50 EUR each). */
function pesFlow() {
  const piece = (n, name) =>
    `<Piece><BlocPiece><InfoPce><IdPce V="${n}"/><TypPce V="01"/><Obj V="Fournitures"/></InfoPce></BlocPiece><LigneDePiece><BlocLignePiece><InfoLignePiece><IdLigne V="1"/><Nature V="6067"/><MtHT V="120.50"/></InfoLignePiece></BlocLignePiece><Tiers><InfoTiers><Nom V="${name}"/></InfoTiers></Tiers></LigneDePiece></Piece>`;
  const bordereau = (id, n, pieces) =>
    `<Bordereau Id="${id}"><BlocBordereau><Exer V="2026"/><IdBord V="${n}"/><DteBordEm V="2026-12-01"/><TypBord V="01"/><NbrPce V="${pieces.length}"/><MtCumulAnnuel V="0"/></BlocBordereau>${pieces.join("")}</Bordereau>`;
  return `<?xml version="1.0" encoding="UTF-8"?>
<PES_Aller><EnTetePES><DteStr V="2026-12-01"/><IdPost V="012345"/><LibelleColBud V="Commune de Testville"/><IdColl V="21690123400017"/></EnTetePES>
<PES_DepenseAller><EnTeteDepense><IdVer V="2"/><InfoDematerialisee V="0"/></EnTeteDepense>
${bordereau("BORD_2026_1", 1, [piece(1, "Société Durand"), piece(2, "Zoé Müller")])}
${bordereau("BORD_2026_2", 2, [piece(1, "ACME")])}
</PES_DepenseAller></PES_Aller>
`;
}

/** `paraph submit` of a PES flow (the format chosen from the content) to the PES circuit
 * tests/web.rs made; returns its id. */
function submitPes(title) {
  const file = join(WORK, `PES_Aller-${++n}.xml`);
  writeFileSync(file, pesFlow(), "utf8");
  const out = execFileSync(
    BIN,
    ["submit", file, "--type", "MANDATE", "--circuit", "mandats-pes", "--title", title],
    { env: { PATH: process.env.PATH, PARAPH_ADDR: ADDR, PARAPH_TOKEN: tok.finance }, encoding: "utf8", timeout: TIMEOUT, stdio: ["ignore", "pipe", "pipe"] },
  );
  const id = out.trim();
  check(/^[0-9a-f]{32}$/.test(id), `submitted the PES flow "${title}" (${id})`);
  return id;
}

async function signIn(who, heading = "Documents en attente") {
  await page.goto(URL);
  // With the keyboard only: the token field has the focus, Enter signs in.
  await page.getByLabel("Jeton d'accès").waitFor();
  check(await page.evaluate(() => document.activeElement?.getAttribute("name") === "token"), "the token field has the focus");
  await page.keyboard.type(tok[who]);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: heading }).waitFor();
  const html = await page.content();
  check(!html.includes(tok[who]), `${who} signed in; the token is nowhere in the page`);
}

async function signOut() {
  await page.locator("[data-test=sign-out]").click();
  await page.getByRole("heading", { name: "Connexion" }).waitFor();
  const stored = await page.evaluate(() => sessionStorage.getItem("paraph.token"));
  check(stored === null, "signed out: the token is gone from session storage");
}

async function openDoc(id) {
  await page.goto(`${URL}#/doc/${id}`);
  await page.locator("[data-test=doc-title]").waitFor();
}

async function docState() {
  return page.locator("[data-test=doc-state]").getAttribute("data-state");
}

try {
  // --- Sign-in: a wrong token is refused, nothing is kept. ---
  await page.goto(URL);
  check((await page.locator("html").getAttribute("lang")) === "fr", "the page is in French");
  await page.getByLabel("Jeton d'accès").fill("pph_wrong-token");
  await page.getByRole("button", { name: "Se connecter" }).click();
  await page.getByText("Jeton refusé par le serveur.").waitFor();
  check((await page.evaluate(() => sessionStorage.getItem("paraph.token"))) === null, "a refused token is not kept");

  const before = Date.now();
  const doc1 = submit("Mandat 2026-001", "1200.50");
  const after = Date.now();

  // --- Carol's inbox, then a document arriving live. ---
  await signIn("carol");
  await page.locator(`tr[data-id="${doc1}"]`).waitFor();
  check(true, "carol's inbox lists the mandate");
  const since = await page.locator(`tr[data-id="${doc1}"] td`).nth(4).textContent();
  check(since === paris(before) || since === paris(after), `dates are shown in Paris time (${since})`);
  check((await unlabelled()).length === 0, "every control of the inbox has a label");
  await fitsAtDoubleZoom("the inbox");
  await page.locator("#live[data-live=on]").waitFor();
  const doc2 = submit("Mandat 2026-002", "99.00");
  await page.locator(`tr[data-id="${doc2}"]`).waitFor();
  check(true, "the inbox shows a new document without reloading (WatchEvents)");
  await page.screenshot({ path: join(SHOTS, "inbox-carol.png"), fullPage: true });

  // --- Carol's visa with a comment. ---
  await page.locator(`tr[data-id="${doc1}"] a`).click();
  await page.locator("[data-test=doc-title]").waitFor();
  check((await page.locator("[data-test=doc-title]").textContent()) === "Mandat 2026-001", "the document page shows the title");
  check(await page.getByText("1200.50").isVisible(), "the document page shows the amount");
  await page.getByLabel("Commentaire (facultatif)").fill("Vu, conforme.");
  await page.getByRole("button", { name: "Viser" }).click();
  await page.locator('[data-test=timeline] li[data-status="DONE"]').first().waitFor();
  check((await page.locator('[data-test=timeline] > li').nth(1).getAttribute("data-status")) === "ACTIVE", "after carol's visa the signature step is active");

  // --- A rejection needs a reason. ---
  await openDoc(doc2);
  await page.getByRole("button", { name: "Rejeter" }).click();
  await page.getByText("Le motif du rejet est obligatoire.").waitFor();
  check((await docState()) === "IN_PROGRESS", "no rejection without a reason");
  await page.getByLabel("Motif du rejet (obligatoire)").fill("Pièce justificative manquante");
  await page.getByRole("button", { name: "Rejeter" }).click();
  await page.locator('[data-test=doc-state][data-state="REJECTED"]').waitFor();
  check(await page.getByText("Pièce justificative manquante").isVisible(), "the rejection and its reason are shown");
  await signOut();

  // --- Alice signs in the page with her PKCS#12. ---
  await signIn("alice");
  await page.locator(`tr[data-id="${doc1}"]`).waitFor();
  await openDoc(doc1);
  await page.getByLabel("Fichier du certificat (.p12, .pfx)").setInputFiles(P12);
  await page.getByLabel("Phrase secrète du certificat").fill("not-the-passphrase");
  await page.getByRole("button", { name: "Ouvrir le certificat" }).click();
  await page.getByText("Phrase secrète incorrecte (ou fichier PKCS#12 endommagé).").waitFor();
  check((await page.getByLabel("Phrase secrète du certificat").inputValue()) === "", "a wrong passphrase is refused and cleared");
  await page.getByLabel("Phrase secrète du certificat").fill(PASS);
  await page.getByRole("button", { name: "Ouvrir le certificat" }).click();
  check((await unlabelled()).length === 0, "every control of the document page has a label");
  await page.locator("[data-test=cert-open]").waitFor();
  check((await page.locator("[data-test=cert-open]").textContent()).includes("TEST Officer"), "the certificate opens in the page");
  await page.locator("[data-test=sign]").click();
  await page.locator('[data-test=doc-state][data-state="COMPLETED"]').waitFor();
  check(true, "alice's signature completes the document (the seal step ran)");
  await page.locator('[data-test=signatures] li[data-signer="alice"] [data-indication="TOTAL_PASSED"]').waitFor();
  check(true, "alice's signature is shown valid");
  await page.locator('[data-test=signatures] li[data-signer="_seal"]').waitFor();
  check(true, "the seal of the commune is shown");
  check((await page.locator('[data-test=timeline] > li[data-status="DONE"]').count()) === 3, "visa, signature and seal are done");
  await page.screenshot({ path: join(SHOTS, "document-completed.png"), fullPage: true });
  await fitsAtDoubleZoom("the document page");
  await signOut();

  // --- The controller: read-only administration, then the audit trail and evidence bundle. ---
  const pesDoc = submitPes("Bordereaux de mandats 2026-12");
  await signIn("auditor");
  await page.getByRole("link", { name: "Administration" }).click();
  await page.locator('[data-test=admin-users] li[data-user="alice"]').waitFor();
  const circuit = await page.locator('[data-test=admin-circuits] [data-circuit="demo"]').textContent();
  check(circuit.includes("visa — carol") && circuit.includes("signature — alice — niveau RGS **") && circuit.includes("cachet"), "the demo circuit is rendered as its steps");
  const toml = await page.locator('[data-circuit="demo"] [data-test=circuit-toml]').textContent();
  check(
    toml.includes('name = "demo"') && toml.includes('kind = "signature"\nactors = ["alice"]\nlevel = 2') && toml.includes('kind = "seal"'),
    "the demo circuit is shown as its TOML file beside its steps",
  );
  check((await unlabelled()).length === 0, "every control of the administration page has a label");
  await fitsAtDoubleZoom("the administration page");
  // A PES flow: its bordereaux as a table, not only a download.
  await openDoc(pesDoc);
  await page.locator('[data-test=bordereaux] tr[data-bordereau="BORD_2026_2"]').waitFor();
  const b1 = await page.locator('[data-test=bordereaux] tr[data-bordereau="BORD_2026_1"]').textContent();
  check(b1.includes("2026") && b1.includes("mandats") && b1.includes("241,00") && b1.includes("Société Durand, Zoé Müller") && b1.includes("non signé"), `the PES flow shows its first bordereau (${b1})`);
  const b2 = await page.locator('[data-test=bordereaux] tr[data-bordereau="BORD_2026_2"]').textContent();
  check(b2.includes("120,50") && b2.includes("ACME"), `the PES flow shows its second bordereau (${b2})`);
  await page.screenshot({ path: join(SHOTS, "document-pes.png"), fullPage: true });
  await openDoc(doc1);
  await page.getByRole("button", { name: "Afficher les événements" }).click();
  await page.locator("[data-test=audit-events] li").first().waitFor();
  const events = await page.locator("[data-test=audit-events]").textContent();
  check(events.includes("approved") && events.includes("completed"), "the auditor sees the document's events");
  const [download] = await Promise.all([page.waitForEvent("download"), page.locator("[data-test=evidence]").click()]);
  await download.saveAs(join(WORK, "evidence.json"));
  const bundle = JSON.parse(readFileSync(join(WORK, "evidence.json"), "utf8"));
  check(typeof bundle === "object" && bundle !== null, "the evidence bundle downloads from the page");
  await signOut();

  // --- The submitter follows a document by its id and withdraws it. ---
  const doc4 = submit("Mandat 2026-004", "10.00");
  await signIn("finance", "Mes documents déposés");
  // His documents, newest first, with their progress.
  await page.locator(`[data-test=mine-list] tr[data-id="${doc4}"]`).waitFor();
  check((await page.locator("[data-test=mine-list] tbody tr").first().getAttribute("data-id")) === doc4, "the submitter's documents are listed newest first");
  check((await page.locator(`tr[data-id="${doc1}"] [data-test=row-state]`).getAttribute("data-state")) === "COMPLETED", "a completed document reads so in his list");
  check((await page.locator(`tr[data-id="${doc4}"] [data-test=progress]`).textContent()).includes("étape 1 sur 3 — visa — attend carol"), "an open document shows its step and who it waits for");
  check((await unlabelled()).length === 0, "every control of the submitter's page has a label");
  await fitsAtDoubleZoom("the submitter's page");
  // He uploads a PDF contract from the page.
  const upload = join(WORK, "contrat-page.pdf");
  writeFileSync(upload, pdf("Contrat 2026-020"), "latin1");
  await page.getByLabel("Fichier (PDF, flux PES ou autre)").setInputFiles(upload);
  check((await page.getByLabel("Titre du document").inputValue()) === "contrat-page", "the title is proposed from the file name");
  await page.getByLabel("Titre du document").fill("Contrat 2026-020");
  await page.getByLabel("Type de document").selectOption({ label: "contrat" });
  await page.getByLabel("Circuit", { exact: true }).selectOption("demo");
  await page.getByLabel("Montant (facultatif, ex. 1200.50)").fill("2500.00");
  await page.getByLabel("Bénéficiaire (facultatif)").fill("ACME");
  await page.getByRole("button", { name: "Déposer", exact: true }).click();
  await page.locator("[data-test=uploaded]").waitFor();
  const uploaded = await page.locator("[data-test=uploaded]").getAttribute("data-id");
  check(/^[0-9a-f]{32}$/.test(uploaded), `the PDF was submitted from the page (${uploaded})`);
  const upRow = page.locator(`[data-test=mine-list] tr[data-id="${uploaded}"]`);
  await upRow.waitFor();
  check((await page.locator("[data-test=mine-list] tbody tr").first().getAttribute("data-id")) === uploaded, "the uploaded document heads his list");
  // Its progress follows carol's visa without a reload (WatchEvents).
  approveAsCarol(uploaded);
  await upRow.locator("[data-test=progress]", { hasText: "étape 2 sur 3 — signature — attend alice" }).waitFor();
  check(true, "the progress column follows the circuit live");
  // The document as uploaded: a PDF (PAdES), its metadata.
  await openDoc(uploaded);
  check((await page.locator("[data-test=doc-title]").textContent()) === "Contrat 2026-020", "the uploaded document has its title");
  check(await page.getByText("2500.00").isVisible(), "the uploaded document has its amount");
  await page.locator("iframe.preview").waitFor();
  check(true, "the uploaded PDF is shown inline");
  // He withdraws it from his list, where the document page leads back.
  await page.getByRole("link", { name: "Retour à mes documents" }).click();
  await upRow.locator("[data-test=withdraw-row]").click();
  await upRow.getByLabel("Motif du retrait").fill("Contrat signé sur papier");
  await upRow.getByRole("button", { name: "Confirmer le retrait" }).click();
  await page.locator(`tr[data-id="${uploaded}"] [data-test=row-state][data-state="WITHDRAWN"]`).waitFor();
  check((await upRow.locator("[data-test=withdraw-row]").count()) === 0, "the submitter withdrew the uploaded document from his list");
  await page.getByLabel("Afficher").selectOption({ label: "retiré" });
  await page.locator("[data-test=mine-list] tbody tr").first().waitFor();
  await page.waitForFunction(() => [...document.querySelectorAll("[data-test=mine-list] [data-test=row-state]")].every((e) => e.getAttribute("data-state") === "WITHDRAWN"));
  check((await page.locator(`[data-test=mine-list] tr[data-id="${uploaded}"]`).count()) === 1, "the state filter shows the withdrawn documents");
  await page.screenshot({ path: join(SHOTS, "submitter.png"), fullPage: true });
  await page.getByRole("link", { name: "Mes documents" }).click();
  await page.getByLabel("Identifiant du document").fill(doc4);
  await page.getByRole("button", { name: "Ouvrir", exact: true }).click();
  await page.locator("[data-test=doc-title]").waitFor();
  await page.getByText("Retirer le document (déposant)").click();
  await page.getByLabel("Motif du retrait").fill("Erreur de montant");
  await page.getByRole("button", { name: "Retirer", exact: true }).click();
  await page.locator('[data-test=doc-state][data-state="WITHDRAWN"]').waitFor();
  check(true, "the submitter withdrew his document from the page");
  await signOut();

  // --- Another tenant's user cannot see the document. ---
  await signIn("other");
  await openDoc(doc1);
  check((await page.locator("[data-test=doc-title]").textContent()) === "Document introuvable.", "another tenant's document is not found");
  await page.getByRole("link", { name: "Mes documents" }).click();
  await page.getByText("Votre rôle ne donne pas accès à cette partie.").waitFor();
  check((await page.locator("[data-test=upload-form]").count()) === 0, "an officer has no submissions list and no upload form");
  await signOut();

  // --- Batches: carol approves two mandates at once, alice signs both at once. ---
  const doc5 = submit("Mandat 2026-005", "75.00");
  const doc6 = submit("Mandat 2026-006", "80.00");
  await signIn("carol");
  for (const id of [doc5, doc6]) await page.locator(`tr[data-id="${id}"] input[type=checkbox]`).check();
  await page.locator("[data-test=approve-selected]").click();
  await page.getByText("2 / 2 — terminé").waitFor();
  check(true, "carol's batch visa went through with its progress");
  await signOut();
  await signIn("alice");
  for (const id of [doc5, doc6]) await page.locator(`tr[data-id="${id}"] input[type=checkbox]`).check();
  await page.getByLabel("Fichier du certificat (.p12, .pfx)").setInputFiles(P12);
  await page.getByLabel("Phrase secrète du certificat").fill(PASS);
  await page.getByRole("button", { name: "Ouvrir le certificat" }).click();
  await page.locator("[data-test=cert-open]").waitFor();
  await page.locator("[data-test=sign-selected]").click();
  await page.getByText("2 / 2 — terminé").waitFor();
  check((await page.locator("[data-test=batch-progress]").textContent()) === "2 / 2 — terminé", "alice's batch signature went through with its progress");
  for (const id of [doc5, doc6]) {
    await openDoc(id);
    await page.locator('[data-test=doc-state][data-state="COMPLETED"]').waitFor();
  }
  check(true, "both mandates of the batch are signed and sealed");
  await signOut();

  // --- A PDF contract: shown inline, signed in the page as PAdES (incremental update). ---
  const pdfDoc = submitPdf("Contrat 2026-010");
  approveAsCarol(pdfDoc);
  await signIn("alice");
  await openDoc(pdfDoc);
  await page.locator("iframe.preview").waitFor();
  check(true, "the PDF is shown inline in the page");
  await page.getByLabel("Fichier du certificat (.p12, .pfx)").setInputFiles(P12);
  await page.getByLabel("Phrase secrète du certificat").fill(PASS);
  await page.getByRole("button", { name: "Ouvrir le certificat" }).click();
  await page.locator("[data-test=cert-open]").waitFor();
  await page.locator("[data-test=sign]").click();
  await page.locator('[data-test=doc-state][data-state="COMPLETED"]').waitFor();
  await page.locator('[data-test=signatures] li[data-signer="alice"] [data-indication="TOTAL_PASSED"]').waitFor();
  check(true, "alice signed the PDF in the page (PAdES), it is sealed and her signature is valid");
  await page.screenshot({ path: join(SHOTS, "document-pdf.png"), fullPage: true });
  await signOut();

  // --- Carol declares an absence with bob as delegate; a new document is marked in bob's inbox. ---
  await signIn("carol");
  await page.getByRole("link", { name: "Absences" }).click();
  await page.getByLabel("Du (heure de Paris)").fill(parisLocal(Date.now() - 3600e3));
  await page.getByLabel("Au (heure de Paris, exclu)").fill(parisLocal(Date.now() + 86400e3));
  await page.getByLabel("Suppléant (identifiant)").fill("bob");
  check((await unlabelled()).length === 0, "every control of the absence page has a label");
  await page.getByRole("button", { name: "Déclarer l'absence" }).click();
  await page.locator("[data-test=absences] li").first().waitFor();
  check((await page.locator("[data-test=absences]").textContent()).includes("bob"), "carol's absence is listed with bob");
  await signOut();
  const doc3 = submit("Mandat 2026-003", "450.00");
  await signIn("bob");
  const row = page.locator(`tr[data-id="${doc3}"]`);
  await row.waitFor();
  check((await row.locator("[data-test=on-behalf-of]").textContent()).includes("carol"), "the delegated document is marked in bob's inbox");
  // Bob approves it with the batch action, with progress.
  await row.locator("input[type=checkbox]").check();
  await page.locator("[data-test=approve-selected]").click();
  await page.getByText("1 / 1 — terminé").waitFor();
  await page.locator(`tr[data-id="${doc3}"]`).waitFor({ state: "detached" });
  check(true, "the batch visa went through and the document left bob's inbox");
  await openDoc(doc3);
  check((await page.locator("[data-test=timeline]").textContent()).includes("pour le compte de carol"), "the timeline says bob acted on behalf of carol");
  await signOut();
} catch (e) {
  failures.push(e.stack || String(e));
  try {
    await page.screenshot({ path: join(SHOTS, "failure.png"), fullPage: true });
  } catch {}
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log("all browser checks passed");
