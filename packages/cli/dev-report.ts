import { writeFileSync } from 'node:fs';
import { renderReport } from './src/report/index.ts';
import { sampleReportData } from './test/report-sample.ts';
const html = await renderReport(sampleReportData(Number(process.argv[2] ?? 16)));
writeFileSync('/tmp/report.html', html);
console.log(html.length, [...html.matchAll(/<svg[^>]*width="(\d+)" height="(\d+)"/g)].map((m) => `${m[1]}x${m[2]}`));
