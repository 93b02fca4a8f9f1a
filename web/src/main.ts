// The officers' web client of paraph: sign-in with a token, the inbox (live through
// WatchEvents), the document page (timeline, content, signatures and their validation), visa,
// rejection and signature in the page with a PKCS#12 certificate, batch actions, absences;
// a submitter's documents with their progress, his uploads and withdrawals; circuits as their
// TOML file; a PES flow's bordereaux.
// Every text reaches the page through textContent: nothing from the server is parsed as HTML.
import { ConnectError, Code } from "@connectrpc/connect";
import * as api from "./api";
import { t, lang, setLang, when, type Lang } from "./i18n";
import {
  DocumentState,
  StepStatus,
  ActionKind,
  type Document,
  type DocumentEvent,
  type InboxItem,
  type SubmittedItem,
  type BordereauSummary,
} from "./gen/paraph/v1/document_pb";
import { StepKind, DocumentType, StepMode, Role } from "./gen/paraph/v1/common_pb";
import { Indication } from "./gen/paraph/v1/signature_pb";
import { openP12, sign, messageDigest, sha256Hex, hex, P12Error, type Signer } from "./signer";

// ---------- DOM helpers ----------

type Attrs = Record<string, string | boolean | undefined>;
type Child = Node | string | null | undefined | false;

function h(tag: string, attrs: Attrs = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}

function on<K extends keyof HTMLElementEventMap>(
  el: HTMLElement,
  ev: K,
  f: (e: HTMLElementEventMap[K]) => void,
): HTMLElement {
  el.addEventListener(ev, f);
  return el;
}

let seq = 0;
/** A labelled control: label + input, tied by a fresh id. */
function field(label: string, input: HTMLElement): HTMLElement[] {
  const id = input.id || `f${++seq}`;
  input.id = id;
  return [h("label", { for: id }, label), input];
}

const main = () => document.getElementById("main") as HTMLElement;

function say(text: string): void {
  const s = document.getElementById("status");
  if (s) s.textContent = text;
}

function show(...nodes: Child[]): void {
  const m = main();
  m.replaceChildren();
  for (const n of nodes) if (n) m.append(n);
  m.focus();
}

function errorText(e: unknown): string {
  if (e instanceof ConnectError) {
    if (e.code === Code.Unauthenticated) return t.badToken;
    if (e.code === Code.NotFound) return t.notFound;
    return `${t.error} (${Code[e.code]}): ${e.rawMessage}`;
  }
  if (e instanceof P12Error) return e.kind === "passphrase" ? t.wrongPassphrase : t.badP12;
  return `${t.error}: ${e instanceof Error ? e.message : String(e)}`;
}

function errorBox(e: unknown): HTMLElement {
  return h("p", { class: "error", role: "alert" }, errorText(e));
}

const enumName = (en: Record<number, string>, v: number) => en[v] ?? "UNSPECIFIED";
const typeName = (v: DocumentType) => t.types[enumName(DocumentType, v)] ?? "—";
const stepName = (v: StepKind) => t.steps[enumName(StepKind, v)] ?? "—";
const stateName = (v: DocumentState) => t.states[enumName(DocumentState, v)] ?? "—";

function routeName(route: string): string {
  if (route === "escalation") return t.escalation;
  if (route === "overdue") return t.overdueRoute;
  return t.delegation;
}

// ---------- the officer's certificate (in memory, this page only) ----------

let signer: Signer | null = null;

function signerPanel(onChange: () => void): HTMLElement {
  const box = h("fieldset", { class: "signer" }, h("legend", {}, t.signWith));
  const render = () => {
    box.replaceChildren(h("legend", {}, t.signWith));
    if (signer) {
      box.append(
        h("p", { "data-test": "cert-open" }, `${t.certOpen} ${signer.subject}`),
        on(h("button", { type: "button", class: "secondary" }, t.forget), "click", () => {
          signer = null;
          render();
          onChange();
        }),
      );
    } else {
      const file = h("input", { type: "file", accept: ".p12,.pfx", name: "p12" }) as HTMLInputElement;
      const pass = h("input", {
        type: "password",
        name: "passphrase",
        autocomplete: "off",
      }) as HTMLInputElement;
      const msg = h("div", { "aria-live": "assertive" });
      const form = h(
        "form",
        {},
        ...field(t.p12File, file),
        ...field(t.passphrase, pass),
        h("div", { class: "actions" }, h("button", { type: "submit" }, t.unlock)),
        msg,
      );
      on(form, "submit", async (e) => {
        e.preventDefault();
        msg.replaceChildren();
        const f = file.files?.[0];
        if (!f || !pass.value) {
          msg.append(h("p", { class: "error", role: "alert" }, t.needP12));
          return;
        }
        try {
          signer = await openP12(new Uint8Array(await f.arrayBuffer()), pass.value);
          pass.value = "";
          render();
          onChange();
        } catch (err) {
          pass.value = "";
          msg.append(errorBox(err));
        }
      });
      box.append(form);
    }
    box.append(
      h(
        "p",
        { class: "notice" },
        `${t.smartCard} `,
        h("code", {}, "paraph sign ID --pkcs11 MODULE"),
      ),
    );
  };
  render();
  return box;
}

/** Signs one document's active step with the open certificate, checking what is signed. */
async function signDocument(id: string): Promise<void> {
  if (!signer) throw new Error(t.needP12);
  const d = await api.docs.getDocument({ id });
  if (d.currentStep < 0) throw new Error(stateName(d.state));
  const step = d.currentStep;
  const content = await api.content(id);
  const got = await sha256Hex(content);
  const key = api.idemKey();
  const prep = await api.sigs.prepareSignature({
    documentId: id,
    step,
    certificateChain: signer.chain,
    idempotencyKey: `${key}/prepare`,
  });
  if (prep.documentId !== id || prep.step !== step) throw new Error(t.digestMismatch);
  let value = new Uint8Array() as Uint8Array<ArrayBuffer>;
  let values: Uint8Array<ArrayBuffer>[] = [];
  if (prep.signatureFormat === "xades-pes") {
    throw new Error(t.pesNotInPage);
  } else if (prep.signatureFormat === "pades") {
    // The incremental update is prepared over the revision the page downloaded.
    const [item] = prep.items;
    if (prep.items.length !== 1 || item.referenceDigest.toLowerCase() !== got) {
      throw new Error(t.digestMismatch);
    }
    values = [(await sign(signer, prep.signatureAlgorithm, item.data)) as Uint8Array<ArrayBuffer>];
  } else {
    const md = messageDigest(prep.signedAttributes);
    if (!md || hex(md) !== got || got !== d.contentSha256.toLowerCase()) {
      throw new Error(t.digestMismatch);
    }
    value = (await sign(signer, prep.signatureAlgorithm, prep.signedAttributes)) as Uint8Array<ArrayBuffer>;
  }
  await api.sigs.completeSignature({
    preparationId: prep.id,
    signatureValue: value,
    signatureValues: values,
    idempotencyKey: `${key}/complete`,
  });
}

// ---------- sign-in ----------

function signInView(problem?: string): void {
  nav();
  const input = h("input", {
    type: "password",
    name: "token",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
  }) as HTMLInputElement;
  const msg = h("div", { "aria-live": "assertive" }, problem && h("p", { class: "error", role: "alert" }, problem));
  const form = h(
    "form",
    { "aria-labelledby": "signin-title" },
    ...field(t.token, input),
    h("div", { class: "actions" }, h("button", { type: "submit" }, t.signInButton)),
    msg,
  );
  on(form, "submit", async (e) => {
    e.preventDefault();
    const tok = input.value.trim();
    input.value = "";
    if (!tok) return;
    api.setToken(tok);
    try {
      await api.docs.listInbox({ pageSize: 1 }).catch((err) => {
        // A valid token whose user has no inbox (a submitter, an auditor).
        if (!(err instanceof ConnectError && err.code === Code.PermissionDenied)) throw err;
      });
      // A submitter who is not an officer starts on his own documents.
      const me = await api.admin.getMe({}).catch(() => null);
      const roles = me?.user?.roles ?? [];
      if (roles.includes(Role.SUBMITTER) && !roles.includes(Role.OFFICER)) {
        if (location.hash === "#/mine") route();
        else location.hash = "#/mine";
        return;
      }
      goInbox();
    } catch (err) {
      api.clearToken();
      msg.replaceChildren(errorBox(err));
    }
  });
  show(h("h1", { id: "signin-title" }, t.signIn), h("p", {}, t.signInIntro), form);
  input.focus();
}

function signOut(): void {
  api.clearToken();
  signer = null;
  stopWatch();
  say("");
  goInbox();
}

/** Shows the inbox (or the sign-in page), whether or not the address changes. */
function goInbox(): void {
  if (location.hash === "" || location.hash === "#/") route();
  else location.hash = "#/";
}

function nav(): void {
  const n = document.getElementById("nav");
  if (!n) return;
  n.setAttribute("aria-label", t.nav);
  const select = h("select", { "aria-label": t.language }) as HTMLSelectElement;
  for (const [v, label] of [
    ["fr", "Français"],
    ["en", "English"],
  ]) {
    select.append(h("option", { value: v, selected: v === lang }, label));
  }
  on(select, "change", () => {
    setLang(select.value as Lang);
    route();
  });
  n.replaceChildren();
  if (api.token()) {
    n.append(
      h("a", { href: "#/" }, t.inbox),
      h("a", { href: "#/mine" }, t.mine),
      h("a", { href: "#/absences" }, t.absences),
      h("a", { href: "#/admin" }, t.admin),
      on(h("button", { type: "button", class: "secondary", "data-test": "sign-out" }, t.signOut), "click", signOut),
    );
  }
  n.append(select);
  const skip = document.querySelector(".skip");
  if (skip) skip.textContent = t.skip;
}

// ---------- live updates ----------

let watching: AbortController | null = null;
let onEvent: ((ev: DocumentEvent | null) => void) | null = null;

function startWatch(): void {
  if (watching) return;
  const ctl = new AbortController();
  watching = ctl;
  const live = async () => {
    let delay = 1000;
    while (!ctl.signal.aborted) {
      try {
        const stream = api.docs.watchEvents({}, { signal: ctl.signal });
        setLive(true);
        for await (const ev of stream) {
          delay = 1000;
          onEvent?.(ev);
        }
      } catch {
        if (ctl.signal.aborted) return;
      }
      setLive(false);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 30000);
      onEvent?.(null);
    }
  };
  void live();
}

function stopWatch(): void {
  watching?.abort();
  watching = null;
}

function setLive(up: boolean): void {
  const el = document.getElementById("live");
  if (el) el.textContent = `${t.live} : ${up ? t.liveOn : t.liveOff}`;
  if (el) el.dataset.live = up ? "on" : "off";
}

// ---------- inbox ----------

function overdue(i: InboxItem, now: number): boolean {
  return !!i.dueAt && i.dueAt.seconds > 0n && Number(i.dueAt.seconds) <= now;
}

async function loadInbox(): Promise<InboxItem[]> {
  const items: InboxItem[] = [];
  let pageToken = "";
  do {
    const r = await api.docs.listInbox({ pageSize: 500, pageToken });
    items.push(...r.items);
    pageToken = r.nextPageToken;
  } while (pageToken);
  const now = Date.now() / 1000;
  // Overdue first, then the earliest due, then the longest waiting.
  const due = (i: InboxItem) => (i.dueAt && i.dueAt.seconds > 0n ? Number(i.dueAt.seconds) : Infinity);
  const since = (i: InboxItem) => Number(i.waitingSince?.seconds ?? 0n);
  return items.sort(
    (a, b) =>
      Number(overdue(b, now)) - Number(overdue(a, now)) || due(a) - due(b) || since(a) - since(b),
  );
}

async function inboxView(): Promise<void> {
  nav();
  lastList = "#/";
  const list = h("div", { id: "inbox-list" });
  const progress = h("div", { "aria-live": "polite" });
  const liveEl = h("p", { id: "live" });
  let items: InboxItem[] = [];
  const selected = new Set<string>();
  const refresh = async () => {
    try {
      items = await loadInbox();
    } catch (e) {
      if (e instanceof ConnectError && e.code === Code.Unauthenticated) return signOut();
      list.replaceChildren(deniedOr(e));
      return;
    }
    for (const id of [...selected]) if (!items.some((i) => i.id === id)) selected.delete(id);
    renderList();
  };
  const renderList = () => {
    const now = Date.now() / 1000;
    if (items.length === 0) {
      list.replaceChildren(h("p", { "data-test": "empty-inbox" }, t.emptyInbox));
      return;
    }
    const all = h("input", { type: "checkbox", "aria-label": t.selectAll }) as HTMLInputElement;
    all.checked = items.every((i) => selected.has(i.id));
    on(all, "change", () => {
      for (const i of items) all.checked ? selected.add(i.id) : selected.delete(i.id);
      renderList();
    });
    const rows = items.map((i) => {
      const box = h("input", {
        type: "checkbox",
        "aria-label": `${t.select} : ${i.title}`,
        "data-id": i.id,
      }) as HTMLInputElement;
      box.checked = selected.has(i.id);
      on(box, "change", () => (box.checked ? selected.add(i.id) : selected.delete(i.id)));
      const marks: Child[] = [];
      if (i.onBehalfOf) {
        marks.push(
          " ",
          h(
            "span",
            { class: "tag delegated", "data-test": "on-behalf-of" },
            `${t.onBehalfOf} ${i.onBehalfOf} (${routeName(i.route)})`,
          ),
        );
      }
      if (overdue(i, now)) marks.push(" ", h("span", { class: "tag overdue" }, t.overdue));
      return h(
        "tr",
        { "data-id": i.id },
        h("td", {}, box),
        h("td", {}, h("a", { href: `#/doc/${encodeURIComponent(i.id)}` }, i.title || i.id), ...marks),
        h("td", {}, typeName(i.type)),
        h("td", {}, `${i.circuit} — ${stepName(i.stepKind)} (${i.step + 1})`),
        h("td", {}, when(i.waitingSince?.seconds)),
        h("td", {}, when(i.dueAt?.seconds)),
        h("td", {}, i.submitter),
      );
    });
    list.replaceChildren(
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          {},
          h("caption", { class: "skip" }, t.inboxTitle),
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col" }, all),
              h("th", { scope: "col" }, t.title),
              h("th", { scope: "col" }, t.type),
              h("th", { scope: "col" }, t.step),
              h("th", { scope: "col" }, t.waitingSince),
              h("th", { scope: "col" }, t.dueAt),
              h("th", { scope: "col" }, t.submitter),
            ),
          ),
          h("tbody", {}, ...rows),
        ),
      ),
    );
  };
  const batch = async (what: "approve" | "sign") => {
    const chosen = items.filter((i) => selected.has(i.id));
    if (chosen.length === 0) return;
    if (what === "sign" && !signer) {
      progress.replaceChildren(h("p", { class: "error", role: "alert" }, t.needP12));
      return;
    }
    const bar = h("progress", { max: String(chosen.length), value: "0", "aria-label": t.progress });
    const line = h("p", { "data-test": "batch-progress" }, `0 / ${chosen.length}`);
    const problems = h("ul", {});
    progress.replaceChildren(bar, line, problems);
    let n = 0;
    for (const i of chosen) {
      try {
        if (what === "approve") {
          await api.docs.approve({ id: i.id, step: i.step, idempotencyKey: api.idemKey() });
        } else {
          await signDocument(i.id);
        }
        selected.delete(i.id);
      } catch (e) {
        problems.append(h("li", { class: "error" }, `${i.title}: ${errorText(e)}`));
      }
      n++;
      bar.setAttribute("value", String(n));
      line.textContent = `${n} / ${chosen.length}${n === chosen.length ? ` — ${t.done}` : ""}`;
    }
    await refresh();
  };
  onEvent = () => {
    void refresh().then(() => say(t.newDocs));
  };
  show(
    h("h1", {}, t.inboxTitle),
    liveEl,
    list,
    h(
      "div",
      { class: "actions" },
      on(h("button", { type: "button", "data-test": "approve-selected" }, t.approveSelected), "click", () => batch("approve")),
      on(h("button", { type: "button", "data-test": "sign-selected" }, t.signSelected), "click", () => batch("sign")),
    ),
    progress,
    signerPanel(() => {}),
    openByIdForm(),
  );
  setLive(!!watching);
  startWatch();
  await refresh();
}

// ---------- document page ----------

let blobUrl: string | null = null;
/** The list the user came from (his inbox or his documents), for the way back. */
let lastList = "#/";

async function documentView(id: string): Promise<void> {
  nav();
  // The page follows the document: a change by anyone (the seal, a colleague) shows at once.
  onEvent = (ev) => {
    if (!ev || ev.documentId === id) void documentView(id);
  };
  if (blobUrl) URL.revokeObjectURL(blobUrl);
  blobUrl = null;
  const back = h("p", {}, lastList === "#/mine" ? h("a", { href: "#/mine" }, t.backMine) : h("a", { href: "#/" }, t.back));
  let d: Document;
  try {
    d = await api.docs.getDocument({ id });
  } catch (e) {
    if (e instanceof ConnectError && e.code === Code.Unauthenticated) return signOut();
    // Another tenant's document and a missing one read the same.
    const missing = e instanceof ConnectError && e.code === Code.NotFound;
    show(back, h("h1", { "data-test": "doc-title" }, t.notFound), missing ? null : errorBox(e));
    return;
  }
  let mine: InboxItem | undefined;
  try {
    mine = (await loadInbox()).find((i) => i.id === id);
  } catch {
    mine = undefined;
  }
  const meta = h("dl", { class: "meta" });
  const add = (k: string, v: Child) => meta.append(h("dt", {}, k), h("dd", {}, v));
  add(t.type, typeName(d.type));
  add(t.state, h("span", { "data-test": "doc-state", "data-state": enumName(DocumentState, d.state) }, stateName(d.state)));
  add(t.circuit, `${d.circuit} v${d.circuitVersion}`);
  add(t.submitter, `${d.submitter}, ${t.at} ${when(d.createdAt?.seconds)}`);
  for (const k of Object.keys(d.metadata).sort()) add(k, d.metadata[k]);
  add("SHA-256", h("code", {}, d.contentSha256));

  const timeline = h(
    "ol",
    { class: "timeline", "data-test": "timeline" },
    ...d.steps.map((s) => {
      const status = enumName(StepStatus, s.status);
      const acts = s.actions.map((a) =>
        h(
          "li",
          {},
          `${t.actionKinds[enumName(ActionKind, a.kind)] ?? ""} ${t.by} ${a.actor === "_seal" ? t.seal : a.actor}` +
            (a.onBehalfOf ? ` (${t.onBehalfOf} ${a.onBehalfOf})` : "") +
            ` ${t.at} ${when(a.at?.seconds)}` +
            (a.reason ? ` — « ${a.reason} »` : ""),
        ),
      );
      return h(
        "li",
        { class: `step-${status.toLowerCase()}`, "data-status": status },
        h("strong", {}, `${s.index + 1}. ${stepName(s.kind)}`),
        ` — ${t.status[status] ?? status}`,
        s.actors.length ? ` — ${s.actors.join(", ")}` : "",
        s.overdue ? h("span", { class: "tag overdue" }, ` ${t.overdue}`) : null,
        acts.length ? h("ul", {}, ...acts) : null,
      );
    }),
  );

  const contentBox = h("div", {}, h("p", {}, "…"));
  const pes = d.signatureFormat === "xades-pes";
  const pesBox = pes ? h("div", { "data-test": "bordereaux" }, h("p", {}, "…")) : null;
  const sigBox = h("div", { "data-test": "signatures" }, h("p", {}, "…"));
  const actions = h("section", { "aria-labelledby": "actions-title" });
  if (mine && d.state === DocumentState.IN_PROGRESS) {
    actions.append(h("h2", { id: "actions-title" }, t.actions), ...actionForms(d, mine));
  }
  show(
    back,
    h("h1", { "data-test": "doc-title" }, d.title || d.id),
    meta,
    actions,
    mine ? null : withdrawSection(d),
    h("h2", {}, t.timeline),
    timeline,
    h("h2", {}, t.content),
    contentBox,
    pes ? h("h2", { id: "bordereaux-title" }, t.bordereaux) : null,
    pesBox,
    h("h2", {}, t.signatures),
    sigBox,
    auditSection(d),
  );
  if (pesBox) void showBordereaux(d.id, pesBox);
  // The content, then the signatures validated over it.
  let content: Uint8Array;
  try {
    content = await api.content(id);
  } catch (e) {
    contentBox.replaceChildren(errorBox(e));
    return;
  }
  const isPdf = new TextDecoder().decode(content.slice(0, 5)) === "%PDF-";
  const blob = new Blob([content as BlobPart], { type: isPdf ? "application/pdf" : "application/octet-stream" });
  blobUrl = URL.createObjectURL(blob);
  const name = d.fileName || `${d.id}${isPdf ? ".pdf" : ""}`;
  contentBox.replaceChildren(
    ...(isPdf ? [h("iframe", { class: "preview", src: blobUrl, title: `${t.content} : ${name}` })] : []),
    h("p", {}, h("a", { href: blobUrl, download: name }, `${t.download} ${name} (${content.length} o)`)),
  );
  try {
    const r = await api.sigs.getSignatures({ documentId: id });
    if (r.signatures.length === 0) {
      sigBox.replaceChildren(h("p", {}, t.noSignatures));
      return;
    }
    const items = await Promise.all(
      r.signatures.map(async (s) => {
        let verdict: Child = "";
        try {
          const rep = await api.sigs.validateSignature({
            data: content,
            signature: d.signatureFormat === "cades" ? s.cms : new Uint8Array(),
            documentId: id,
          });
          const ind = enumName(Indication, rep.indication);
          verdict = h(
            "span",
            { class: `tag ${rep.indication === Indication.TOTAL_PASSED ? "ok" : "bad"}`, "data-indication": ind },
            `${t.validation} : ${t.indications[ind] ?? ind}${rep.subIndication ? ` (${rep.subIndication})` : ""}`,
          );
        } catch (e) {
          verdict = errorText(e);
        }
        return h(
          "li",
          { "data-signer": s.signer },
          `${s.seal ? t.seal : s.signer}` +
            (s.onBehalfOf ? ` (${t.onBehalfOf} ${s.onBehalfOf})` : "") +
            ` — ${s.subject} — RGS ${"*".repeat(s.level)} — ${when(s.signingTime?.seconds)} `,
          verdict,
        );
      }),
    );
    sigBox.replaceChildren(h("ul", {}, ...items));
  } catch (e) {
    sigBox.replaceChildren(errorBox(e));
  }
}

/** A PES flow as its bordereaux, one row each: what the officer signs, and who signed. */
async function showBordereaux(id: string, box: HTMLElement): Promise<void> {
  let rows: BordereauSummary[];
  try {
    rows = (await api.docs.getContentSummary({ id })).bordereaux;
  } catch (e) {
    box.replaceChildren(errorBox(e));
    return;
  }
  const euros = (cents: bigint) =>
    new Intl.NumberFormat(lang === "en" ? "en-GB" : "fr-FR", { style: "currency", currency: "EUR" }).format(Number(cents) / 100);
  box.replaceChildren(
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        {},
        h("caption", { class: "skip" }, t.bordereaux),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ...[t.bordereau, t.exercise, t.nature, t.pieces, t.total, t.beneficiaries, t.signer].map((c) => h("th", { scope: "col" }, c)),
          ),
        ),
        h(
          "tbody",
          {},
          ...rows.map((b) =>
            h(
              "tr",
              { "data-bordereau": b.id, "data-signed": b.signed ? "yes" : "no" },
              h("th", { scope: "row" }, b.id || "—"),
              h("td", {}, b.exercise),
              h("td", {}, b.kind === "PES_RecetteAller" ? t.titles : t.mandates),
              h("td", { class: "num" }, String(b.pieces)),
              h("td", { class: "num" }, euros(b.totalCents)),
              h("td", {}, b.beneficiaries.join(", ")),
              h(
                "td",
                {},
                b.signed
                  ? h(
                      "span",
                      { class: `tag ${b.defect ? "bad" : "ok"}` },
                      `${t.signedBy} ${b.signer || "?"}` +
                        (b.claimedRole ? ` (${b.claimedRole})` : "") +
                        (b.defect ? ` — ${t.defect} : ${b.defect}` : ""),
                    )
                  : t.unsigned,
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

/** Submitters and auditors follow a document by its id (the one `paraph submit` printed). */
function openByIdForm(): HTMLElement {
  const input = h("input", { type: "text", name: "document-id", autocomplete: "off", spellcheck: "false" }) as HTMLInputElement;
  const form = h(
    "form",
    { "data-test": "open-by-id" },
    ...field(t.documentId, input),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "secondary" }, t.open)),
  );
  on(form, "submit", (e) => {
    e.preventDefault();
    const id = input.value.trim();
    if (id) location.hash = `#/doc/${encodeURIComponent(id)}`;
  });
  return h("section", { "aria-labelledby": "open-title" }, h("h2", { id: "open-title" }, t.openById), form);
}

/** The submitter withdraws a document still in progress (the server checks who may). */
function withdrawSection(d: Document): HTMLElement | null {
  if (d.state !== DocumentState.IN_PROGRESS) return null;
  const reason = h("textarea", { name: "withdraw-reason", rows: "2" }) as HTMLTextAreaElement;
  const msg = h("div", { "aria-live": "assertive" });
  const form = h(
    "form",
    { "data-test": "withdraw-form" },
    ...field(t.withdrawReason, reason),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "danger" }, t.withdraw)),
    msg,
  );
  on(form, "submit", async (e) => {
    e.preventDefault();
    try {
      await api.docs.withdraw({ id: d.id, reason: reason.value.trim(), idempotencyKey: api.idemKey() });
      say(t.withdrawn);
      await documentView(d.id);
    } catch (err) {
      msg.replaceChildren(deniedOr(err));
    }
  });
  return h("details", {}, h("summary", {}, t.withdrawTitle), form);
}

/** Auditors: the document's events in the audit log, and its evidence bundle (UTC inside). */
function auditSection(d: Document): HTMLElement {
  const out = h("div", { "data-test": "audit" });
  const events = on(h("button", { type: "button", class: "secondary" }, t.showEvents), "click", async () => {
    try {
      const r = await api.audit.listEvents({ documentId: d.id });
      out.replaceChildren(
        h(
          "ol",
          { "data-test": "audit-events" },
          ...r.events.map((e) => {
            let text: string;
            try {
              const ev = JSON.parse(new TextDecoder().decode(e.event));
              text = `#${e.index} — ${when(ev.at)} — ${ev.kind}` +
                (ev.actor ? ` — ${ev.actor}` : "") +
                (ev.on_behalf_of ? ` (${t.onBehalfOf} ${ev.on_behalf_of})` : "") +
                (ev.detail ? ` — ${ev.detail}` : "");
            } catch {
              text = `#${e.index}`;
            }
            return h("li", {}, text);
          }),
        ),
      );
    } catch (e) {
      out.replaceChildren(deniedOr(e));
    }
  });
  const bundle = on(h("button", { type: "button", class: "secondary", "data-test": "evidence" }, t.evidence), "click", async () => {
    try {
      const r = await api.audit.exportEvidence({ documentId: d.id });
      const url = URL.createObjectURL(new Blob([r.bundle as BlobPart], { type: "application/json" }));
      const a = h("a", { href: url, download: `evidence-${d.id}.json` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (e) {
      out.replaceChildren(deniedOr(e));
    }
  });
  return h(
    "section",
    { "aria-labelledby": "audit-title" },
    h("h2", { id: "audit-title" }, t.auditTitle),
    h("p", {}, t.evidenceNote),
    h("div", { class: "actions" }, events, bundle),
    out,
  );
}

function deniedOr(e: unknown): HTMLElement {
  if (e instanceof ConnectError && e.code === Code.PermissionDenied) return h("p", {}, t.denied);
  return errorBox(e);
}

function actionForms(d: Document, item: InboxItem): HTMLElement[] {
  const msg = h("div", { "aria-live": "assertive", "data-test": "action-message" });
  const done = async (text: string) => {
    say(text);
    await documentView(d.id);
  };
  const out: HTMLElement[] = [msg];
  if (item.stepKind === StepKind.VISA) {
    const comment = h("textarea", { name: "comment", rows: "2" }) as HTMLTextAreaElement;
    const form = h(
      "form",
      { "data-test": "approve-form" },
      ...field(t.comment, comment),
      h("div", { class: "actions" }, h("button", { type: "submit" }, t.approve)),
    );
    on(form, "submit", async (e) => {
      e.preventDefault();
      try {
        await api.docs.approve({
          id: d.id,
          step: item.step,
          comment: comment.value,
          idempotencyKey: api.idemKey(),
        });
        await done(t.approved);
      } catch (err) {
        msg.replaceChildren(errorBox(err));
      }
    });
    out.push(form);
  }
  if (item.stepKind === StepKind.SIGNATURE) {
    const button = h("button", { type: "button", "data-test": "sign" }, t.sign);
    on(button, "click", async () => {
      msg.replaceChildren();
      if (!signer) {
        msg.append(h("p", { class: "error", role: "alert" }, t.needP12));
        return;
      }
      button.setAttribute("disabled", "");
      try {
        await signDocument(d.id);
        await done(t.signed);
      } catch (err) {
        button.removeAttribute("disabled");
        msg.replaceChildren(errorBox(err));
      }
    });
    out.push(signerPanel(() => {}), h("div", { class: "actions" }, button));
  }
  const reason = h("textarea", { name: "reason", rows: "2", required: true }) as HTMLTextAreaElement;
  const reject = h(
    "form",
    { "data-test": "reject-form" },
    ...field(t.reason, reason),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "danger" }, t.reject)),
  );
  reject.setAttribute("novalidate", "");
  on(reject, "submit", async (e) => {
    e.preventDefault();
    if (!reason.value.trim()) {
      msg.replaceChildren(h("p", { class: "error", role: "alert" }, t.reasonRequired));
      reason.focus();
      return;
    }
    try {
      await api.docs.reject({
        id: d.id,
        step: item.step,
        reason: reason.value.trim(),
        idempotencyKey: api.idemKey(),
      });
      await done(t.rejected);
    } catch (err) {
      msg.replaceChildren(errorBox(err));
    }
  });
  out.push(reject);
  return out;
}

// ---------- a submitter's documents ----------

/** How far a submitted document went: a progress bar and its words. */
function progressCell(d: SubmittedItem): HTMLElement {
  const bar = h("progress", {
    max: String(Math.max(d.stepsTotal, 1)),
    value: String(d.stepsFinished),
    "aria-label": `${t.progressCol} : ${d.title || d.id}`,
  });
  let words: string;
  if (d.currentStep >= 0) {
    words = `${t.stepOf(d.currentStep + 1, d.stepsTotal)} — ${stepName(d.currentStepKind)}` +
      (d.waitingFor.length ? ` — ${t.waitingFor} ${d.waitingFor.join(", ")}` : "");
  } else {
    words = t.finishedOf(d.stepsFinished, d.stepsTotal);
  }
  return h("div", { class: "progress", "data-test": "progress" }, bar, " ", h("span", {}, words));
}

/** The withdrawal of one document from the list: the button opens a reason and a confirmation. */
function withdrawCell(d: SubmittedItem, msg: HTMLElement, after: () => Promise<void>): HTMLElement {
  const cell = h("div", {});
  const open = on(
    h("button", { type: "button", class: "danger", "data-test": "withdraw-row", "aria-label": t.withdrawOne(d.title || d.id) }, t.withdraw),
    "click",
    () => {
      const reason = h("input", { type: "text", name: "withdraw-reason", autocomplete: "off" }) as HTMLInputElement;
      const form = h(
        "form",
        { "data-test": "withdraw-row-form" },
        ...field(t.withdrawReason, reason),
        h("div", { class: "actions" }, h("button", { type: "submit", class: "danger" }, t.withdrawConfirm)),
      );
      on(form, "submit", async (e) => {
        e.preventDefault();
        try {
          await api.docs.withdraw({ id: d.id, reason: reason.value.trim(), idempotencyKey: api.idemKey() });
          say(t.withdrawn);
          msg.replaceChildren(h("p", {}, t.withdrawn));
          await after();
        } catch (err) {
          msg.replaceChildren(deniedOr(err));
        }
      });
      cell.replaceChildren(form);
      reason.focus();
    },
  );
  cell.append(open);
  return cell;
}

/** The upload form: a file, its title, type, circuit and the usual metadata. */
function uploadForm(after: () => Promise<void>): HTMLElement {
  const file = h("input", { type: "file", name: "document-file", required: true }) as HTMLInputElement;
  const title = h("input", { type: "text", name: "title", required: true, autocomplete: "off" }) as HTMLInputElement;
  const type = h("select", { name: "type" }) as HTMLSelectElement;
  for (const v of [DocumentType.MANDATE, DocumentType.CONTRACT, DocumentType.OTHER]) {
    type.append(h("option", { value: String(v) }, typeName(v)));
  }
  const circuit = h("select", { name: "circuit", required: true }) as HTMLSelectElement;
  const amount = h("input", { type: "text", name: "amount", inputmode: "decimal", autocomplete: "off" }) as HTMLInputElement;
  const beneficiary = h("input", { type: "text", name: "beneficiary", autocomplete: "off" }) as HTMLInputElement;
  const msg = h("div", { "aria-live": "assertive", "data-test": "upload-message" });
  const button = h("button", { type: "submit" }, t.uploadButton);
  on(file, "change", () => {
    const f = file.files?.[0];
    if (f && !title.value) title.value = f.name.replace(/\.[^.]+$/, "");
  });
  api.circuits
    .listCircuits({})
    .then((r) => {
      if (r.circuits.length === 0) msg.replaceChildren(h("p", {}, t.noCircuit));
      for (const c of [...r.circuits].sort((a, b) => a.name.localeCompare(b.name))) {
        circuit.append(h("option", { value: c.name }, `${c.name} (v${c.version})`));
      }
    })
    .catch((e) => msg.replaceChildren(errorBox(e)));
  const form = h(
    "form",
    { "data-test": "upload-form" },
    ...field(t.uploadFile, file),
    ...field(t.docTitle, title),
    ...field(t.docType, type),
    ...field(t.circuitChoice, circuit),
    ...field(t.amount, amount),
    ...field(t.beneficiary, beneficiary),
    h("div", { class: "actions" }, button),
    h("p", { class: "notice" }, t.largeHint),
    msg,
  );
  form.setAttribute("novalidate", "");
  on(form, "submit", async (e) => {
    e.preventDefault();
    const f = file.files?.[0];
    if (!f || !title.value.trim() || !circuit.value) {
      msg.replaceChildren(h("p", { class: "error", role: "alert" }, t.needFile));
      return;
    }
    const metadata: Record<string, string> = {};
    if (amount.value.trim()) metadata.amount = amount.value.trim();
    if (beneficiary.value.trim()) metadata.beneficiary = beneficiary.value.trim();
    button.setAttribute("disabled", "");
    msg.replaceChildren(h("p", {}, t.uploading));
    try {
      const d = await api.docs.submitDocumentInline({
        header: {
          type: Number(type.value) as DocumentType,
          title: title.value.trim(),
          circuit: circuit.value,
          metadata,
          fileName: f.name,
          signatureFormat: "",
          idempotencyKey: api.idemKey(),
        },
        content: new Uint8Array(await f.arrayBuffer()),
      });
      msg.replaceChildren(h("p", { "data-test": "uploaded", "data-id": d.id }, t.uploaded(d.title)));
      say(t.uploaded(d.title));
      file.value = "";
      title.value = "";
      amount.value = "";
      beneficiary.value = "";
      await after();
    } catch (err) {
      msg.replaceChildren(errorBox(err));
    } finally {
      button.removeAttribute("disabled");
    }
  });
  return h("section", { "aria-labelledby": "upload-title" }, h("h2", { id: "upload-title" }, t.uploadTitle), form);
}

async function mineView(): Promise<void> {
  nav();
  lastList = "#/mine";
  const list = h("div", { "data-test": "mine-list" }, h("p", {}, "…"));
  const msg = h("div", { "aria-live": "assertive", "data-test": "mine-message" });
  const filter = h("select", { name: "state-filter" }) as HTMLSelectElement;
  filter.append(h("option", { value: "0" }, t.allStates));
  for (const st of [DocumentState.IN_PROGRESS, DocumentState.COMPLETED, DocumentState.REJECTED, DocumentState.WITHDRAWN]) {
    filter.append(h("option", { value: String(st) }, stateName(st)));
  }
  const moreBox = h("div", { class: "actions" });
  let items: SubmittedItem[] = [];
  let next = "";
  const fetchPage = async (token: string) => {
    const r = await api.docs.listSubmitted({ pageSize: 50, pageToken: token, state: Number(filter.value) as DocumentState });
    next = r.nextPageToken;
    return r.documents;
  };
  const refresh = async () => {
    try {
      // The pages already shown, again (a withdrawal or a step changes them).
      const shown = Math.max(items.length, 1);
      items = [];
      let token = "";
      do {
        items.push(...(await fetchPage(token)));
        token = next;
      } while (token && items.length < shown);
    } catch (e) {
      if (e instanceof ConnectError && e.code === Code.Unauthenticated) return signOut();
      list.replaceChildren(deniedOr(e));
      return;
    }
    renderList();
  };
  const renderList = () => {
    moreBox.replaceChildren();
    if (next) {
      moreBox.append(
        on(h("button", { type: "button", class: "secondary" }, t.more), "click", async () => {
          try {
            items.push(...(await fetchPage(next)));
            renderList();
          } catch (e) {
            msg.replaceChildren(errorBox(e));
          }
        }),
      );
    }
    if (items.length === 0) {
      list.replaceChildren(h("p", { "data-test": "none-submitted" }, t.noneSubmitted));
      return;
    }
    const rows = items.map((d) =>
      h(
        "tr",
        { "data-id": d.id },
        h("td", {}, h("a", { href: `#/doc/${encodeURIComponent(d.id)}` }, d.title || d.id)),
        h("td", {}, typeName(d.type)),
        h("td", {}, `${d.circuit} v${d.circuitVersion}`),
        h("td", {}, h("span", { "data-test": "row-state", "data-state": enumName(DocumentState, d.state) }, stateName(d.state))),
        h("td", {}, progressCell(d)),
        h("td", {}, when(d.createdAt?.seconds)),
        h("td", {}, d.state === DocumentState.IN_PROGRESS ? withdrawCell(d, msg, refresh) : ""),
      ),
    );
    list.replaceChildren(
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          {},
          h("caption", { class: "skip" }, t.mineTitle),
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col" }, t.title),
              h("th", { scope: "col" }, t.type),
              h("th", { scope: "col" }, t.circuit),
              h("th", { scope: "col" }, t.state),
              h("th", { scope: "col" }, t.progressCol),
              h("th", { scope: "col" }, t.submittedAt),
              h("th", { scope: "col" }, h("span", { class: "skip" }, t.actions)),
            ),
          ),
          h("tbody", {}, ...rows),
        ),
      ),
    );
  };
  on(filter, "change", () => {
    items = [];
    void refresh();
  });
  // Only submitters have documents of their own (and may upload).
  try {
    items = await fetchPage("");
  } catch (e) {
    if (e instanceof ConnectError && e.code === Code.Unauthenticated) return signOut();
    onEvent = null;
    show(h("h1", {}, t.mineTitle), deniedOr(e));
    return;
  }
  // The list follows the documents: a visa, a signature, the seal show at once.
  onEvent = () => {
    void refresh();
  };
  show(
    h("h1", {}, t.mineTitle),
    uploadForm(async () => {
      items = [];
      await refresh();
    }),
    h("h2", { id: "mine-list-title" }, t.mine),
    h("div", { class: "filters" }, ...field(t.stateFilter, filter)),
    msg,
    list,
    moreBox,
    openByIdForm(),
  );
  renderList();
}

// ---------- absences ----------

/** A `datetime-local` value read as Europe/Paris wall time, in seconds since the epoch. */
function parisSeconds(v: string): bigint | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})$/.exec(v);
  if (!m) return null;
  const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
  const offset = (ms: number) => {
    const p = new Intl.DateTimeFormat("en-GB", {
      timeZone: "Europe/Paris",
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
    }).formatToParts(new Date(ms));
    const g = (k: string) => Number(p.find((x) => x.type === k)?.value);
    return Date.UTC(g("year"), g("month") - 1, g("day"), g("hour"), g("minute")) - ms;
  };
  let ms = wall - offset(wall);
  ms = wall - offset(ms);
  return BigInt(Math.floor(ms / 1000));
}

async function absencesView(): Promise<void> {
  nav();
  onEvent = null;
  const list = h("div", {});
  const msg = h("div", { "aria-live": "assertive" });
  const refresh = async () => {
    try {
      const r = await api.dele.listAbsences({});
      if (r.absences.length === 0) {
        list.replaceChildren(h("p", {}, t.noAbsences));
        return;
      }
      list.replaceChildren(
        h(
          "ul",
          { "data-test": "absences" },
          ...r.absences.map((a) =>
            h(
              "li",
              {},
              `${a.user} : ${when(a.from?.seconds)} → ${when(a.to?.seconds)}, ${t.delegate.split(" (")[0]} ${a.delegate}` +
                (a.active ? ` (${t.active})` : ""),
              " ",
              on(h("button", { type: "button", class: "secondary" }, t.cancel), "click", async () => {
                try {
                  await api.dele.cancelAbsence({ id: a.id, idempotencyKey: api.idemKey() });
                  await refresh();
                } catch (e) {
                  msg.replaceChildren(errorBox(e));
                }
              }),
            ),
          ),
        ),
      );
    } catch (e) {
      list.replaceChildren(errorBox(e));
    }
  };
  const from = h("input", { type: "datetime-local", name: "from", required: true }) as HTMLInputElement;
  const to = h("input", { type: "datetime-local", name: "to", required: true }) as HTMLInputElement;
  const delegate = h("input", { type: "text", name: "delegate", required: true, autocomplete: "off" }) as HTMLInputElement;
  const form = h(
    "form",
    { "data-test": "absence-form" },
    ...field(t.from, from),
    ...field(t.to, to),
    ...field(t.delegate, delegate),
    h("div", { class: "actions" }, h("button", { type: "submit" }, t.declare)),
  );
  on(form, "submit", async (e) => {
    e.preventDefault();
    const f = parisSeconds(from.value);
    const u = parisSeconds(to.value);
    if (f === null || u === null) return;
    try {
      await api.dele.declareAbsence({
        from: { seconds: f },
        to: { seconds: u },
        delegate: delegate.value.trim(),
        idempotencyKey: api.idemKey(),
      });
      msg.replaceChildren(h("p", {}, t.absenceDeclared));
      say(t.absenceDeclared);
      await refresh();
    } catch (err) {
      msg.replaceChildren(errorBox(err));
    }
  });
  show(h("h1", {}, t.absenceTitle), h("p", {}, t.absenceIntro), form, msg, list);
  await refresh();
}

// ---------- administration (read-only) ----------

async function adminView(): Promise<void> {
  nav();
  onEvent = null;
  const users = h("div", { "data-test": "admin-users" }, "…");
  const circuits = h("div", { "data-test": "admin-circuits" }, "…");
  const absences = h("div", { "data-test": "admin-absences" }, "…");
  show(
    h("h1", {}, t.adminTitle),
    h("h2", {}, t.users),
    users,
    h("h2", {}, t.circuits),
    circuits,
    h("h2", {}, t.allAbsences),
    absences,
  );
  const roleName = (r: Role) => enumName(Role, r).toLowerCase();
  await Promise.all([
    api.admin
      .listUsers({})
      .then((r) =>
        users.replaceChildren(
          h(
            "ul",
            {},
            ...r.users.map((u) =>
              h(
                "li",
                { "data-user": u.name },
                `${u.name}${u.displayName ? ` (${u.displayName})` : ""} — ${t.roles} : ${u.roles.map(roleName).join(", ")}` +
                  (u.certificates.length ? ` — ${u.certificates.length} ${t.certificates}` : ""),
              ),
            ),
          ),
        ),
      )
      .catch((e) => users.replaceChildren(deniedOr(e))),
    api.circuits
      .listCircuits({})
      .then((r) =>
        circuits.replaceChildren(
          ...r.circuits.map((c) =>
            h(
              "section",
              { "data-circuit": c.name },
              h("h3", {}, `${c.name} v${c.version}`),
              h(
                "div",
                { class: "circuit-views" },
                h(
                  "div",
                  {},
                  h("h4", {}, t.circuitSteps),
                  h(
                "ol",
                {},
                ...c.steps.map((st) => {
                  const mode = enumName(StepMode, st.mode);
                  return h(
                    "li",
                    {},
                    `${stepName(st.kind)}` +
                      (st.actors.length ? ` — ${st.actors.join(", ")}` : "") +
                      (st.actors.length > 1 ? ` (${mode === "QUORUM" ? `${st.quorum}/${st.actors.length}` : mode.toLowerCase()})` : "") +
                      (st.level ? ` — ${t.level} ${"*".repeat(st.level)}` : "") +
                      (st.condition ? ` — ${t.condition} ${st.condition}` : "") +
                      (st.deadlineSeconds ? ` — ${t.deadline} ${Number(st.deadlineSeconds) / 3600} h` : ""),
                  );
                }),
                  ),
                ),
                h(
                  "div",
                  {},
                  h("h4", { id: `toml-${c.name}` }, t.circuitToml),
                  h("pre", { class: "toml", "data-test": "circuit-toml", tabindex: "0", "aria-labelledby": `toml-${c.name}` }, c.toml),
                ),
              ),
            ),
          ),
        ),
      )
      .catch((e) => circuits.replaceChildren(deniedOr(e))),
    api.dele
      .listAbsences({})
      .then((r) =>
        absences.replaceChildren(
          r.absences.length === 0
            ? h("p", {}, t.noAbsences)
            : h(
                "ul",
                {},
                ...r.absences.map((a) =>
                  h("li", {}, `${a.user} : ${when(a.from?.seconds)} → ${when(a.to?.seconds)} — ${a.delegate}` + (a.active ? ` (${t.active})` : "")),
                ),
              ),
        ),
      )
      .catch((e) => absences.replaceChildren(deniedOr(e))),
  ]);
}

// ---------- routing ----------

function route(): void {
  document.documentElement.lang = lang;
  if (!api.token()) {
    stopWatch();
    signInView();
    return;
  }
  startWatch();
  const hash = location.hash.replace(/^#/, "") || "/";
  const doc = /^\/doc\/([^/]+)$/.exec(hash);
  let p: Promise<void>;
  if (doc) p = documentView(decodeURIComponent(doc[1]));
  else if (hash === "/absences") p = absencesView();
  else if (hash === "/mine") p = mineView();
  else if (hash === "/admin") p = adminView();
  else p = inboxView();
  p.catch((e) => show(errorBox(e)));
}

window.addEventListener("hashchange", route);
route();
