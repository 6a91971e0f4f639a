// A case's PDF reports: analysts and admins request one; its progress shows live (the
// job:{id} channel) and the list is read again when the report's row commits (case:{id});
// a ready report downloads.
import { call, download, errorBox } from "../api.js";
import { date, el, label, table } from "../format.js";
import * as live from "../live.js";

export async function render({ root, can, signal, redraw }, kase) {
  const progress = new Map(); // report id → "40 %"
  const list = el("div", {});
  const status = el("p", { id: "report-status", role: "status" });
  root.append(el("h2", { id: "tab-title" }, "Reports"));
  if (can("analyst", "admin")) {
    const button = el("button", { type: "button", id: "request-report" }, "Generate PDF report");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        status.replaceChildren();
        follow(await call(`/cases/${kase.id}/reports`, { method: "POST" }));
        await draw();
      } catch (error) {
        status.replaceChildren(errorBox(error, "Could not request a report"));
      } finally { button.disabled = false; }
    });
    root.append(el("p", { class: "hint" }, "A PDF of the case, generated in the background."), button);
  }
  root.append(status, list);

  const followed = new Set();
  const follow = (report) => {
    if (!report.job_id || followed.has(report.id)) return;
    followed.add(report.id);
    const stop = live.follow(`job:${report.job_id}`, (p) => {
      if (p.total) progress.set(report.id, `${Math.round((100 * p.current) / p.total)} %`);
      const cell = list.querySelector(`[data-report="${report.id}"]`);
      if (cell) cell.textContent = `generating… ${progress.get(report.id) || ""}`;
    });
    signal.addEventListener("abort", stop);
  };
  const state = (r) => {
    if (r.status === "pending") return el("span", { class: "badge pending", "data-report": r.id }, `generating… ${progress.get(r.id) || ""}`);
    return el("span", { class: `badge ${r.status}` }, label(r.status));
  };
  const draw = async () => {
    let reports;
    try {
      reports = (await call(`/cases/${kase.id}/reports`, { signal })).items;
    } catch (error) {
      if (!signal.aborted) list.replaceChildren(errorBox(error, "Could not load the reports"));
      return;
    }
    list.replaceChildren(table([
      { label: "Report", value: (r) => `#${r.id} · ${r.kind}` },
      { label: "Requested", value: (r) => date(r.created_at) },
      { label: "Status", value: state },
      { label: "Finished", value: (r) => date(r.finished_at) },
      { label: "File", value: (r) => (r.file_url
        ? el("button", { type: "button", class: "link", onclick: () => download(r.file_url, `case-${kase.id}-report-${r.id}.pdf`) }, "Download PDF")
        : "") },
    ], reports, { id: "report-rows", caption: "Reports", empty: "No report generated for this case yet." }));
    for (const r of reports) if (r.status === "pending") follow(r);
  };
  await redraw(["reports"], draw);
}
