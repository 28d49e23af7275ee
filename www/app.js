/* reactor_http demo script: plain ES2015, no dependencies. */
document.addEventListener('DOMContentLoaded', () => {
  const status = document.getElementById('js-status');
  if (status) {
    status.textContent = 'JavaScript ran: this script was served by reactor_http.';
    status.classList.add('ok');
  }

  const loadTime = document.getElementById('load-time');
  if (loadTime) {
    const ms = performance.now();
    loadTime.textContent = `DOMContentLoaded after ${ms.toFixed(1)} ms.`;
  }
});
