// The dashboards' charts. The kernel sends plotly's figure JSON ({data, layout}) under the
// mime type below; this draws it with plotly.js's basic bundle (bar, scatter, pie: ~1 MB)
// instead of the full plotly.js (~4.8 MB) that jupyterlab-plotly loads on every page.
import { Widget } from '@lumino/widgets';
import Plotly from 'plotly.js-basic-dist-min';

export const MIME_TYPE = 'application/vnd.aifactory.chart+json';

const CONFIG = { responsive: true, displaylogo: false };

class ChartRenderer extends Widget {
  constructor(options) {
    super();
    this._mimeType = options.mimeType;
    this.addClass('wb-chart');
  }

  async renderModel(model) {
    const fig = model.data[this._mimeType] || {};
    await Plotly.react(this.node, fig.data || [], fig.layout || {},
                       { ...CONFIG, ...(fig.config || {}) });
  }

  onAfterShow() {
    if (this.node.classList.contains('js-plotly-plot')) {
      Plotly.Plots.resize(this.node);
    }
  }

  onResize() {
    if (this.isVisible && this.node.classList.contains('js-plotly-plot')) {
      Plotly.Plots.resize(this.node);
    }
  }
}

export const rendererFactory = {
  safe: true,
  mimeTypes: [MIME_TYPE],
  createRenderer: options => new ChartRenderer(options)
};

const extension = {
  id: '@aifactory/dashboard-charts:plugin',
  rendererFactory,
  rank: 0,
  dataType: 'json'
};

export default extension;
