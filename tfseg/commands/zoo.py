"""``tfseg zoo list`` and ``tfseg zoo show NAME``: the model cards."""

from __future__ import annotations

from tfseg.commands.arguments import reports_errors


def _figure(card, metric):
    value = card.measured(metric)
    return "-" if value is None else f"{value:.2f}"


def _published(card):
    entries = card.data.get("published") or ()
    return "; ".join(f"{e['value']} {e['metric']} ({e.get('data', '')})" for e in entries[:1]) or "-"


@reports_errors
def run_list(args):
    from tfseg import zoo

    print("| name | model | dataset | classes | weights | held-out mIoU (here) | val mIoU (here) | +CRF | published |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in zoo.list():
        card = zoo.card(name)
        options = ", ".join(f"{k}={v}" for k, v in card.options.items())
        where = "in repo" if card.weights.get("file") else ("download" if card.weights else "none")
        print(f"| {name} | {card.builder}({options}) | {card.data['dataset']['name']} | {card.num_classes} | "
              f"{where} | {_figure(card, 'heldout_mean_iou')} | {_figure(card, 'val_mean_iou')} | "
              f"{_figure(card, 'val_mean_iou_crf')} | {_published(card)} |")
    return 0


@reports_errors
def run_show(args):
    from tfseg import zoo

    print(zoo.card(args.name).path.read_text(), end="")
    return 0


def register(subparsers):
    parser = subparsers.add_parser("zoo", help="list the zoo's model cards or show one")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="one line per card").set_defaults(func=run_list)
    show = actions.add_parser("show", help="print a card")
    show.add_argument("name")
    show.set_defaults(func=run_show)
