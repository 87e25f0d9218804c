// B4: the letter's print button (no inline handler: the pages' CSP allows none).
document.getElementById('print-letter')?.addEventListener('click', () => window.print());
