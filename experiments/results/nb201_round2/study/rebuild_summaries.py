"""Run once on 2026-12-08 from this folder, after `config.json` of each run was written to
`/tmp/cfg/<run>/` by its exact command (see ../README.md). Rebuilds summary.json of a study run whose workdir was lost with its machine, from the run's
own history.jsonl (written by the run each epoch) and the runs.csv row its driver wrote from the
real summary.json; config.json from the run's exact command started again in a scratch workdir."""
import csv, json, os, shutil
ref = json.load(open('finished/r2_darts_2nd_seed1/summary.json'))
ref_cfg = json.load(open('finished/r2_darts_2nd_seed1/config.json'))
rows = {(r['method'], r['seed']): r for r in csv.DictReader(open('runs.csv'))}
for method, seed in [('pcdarts', 1), ('lease_hvp_pcdarts', 1), ('darts_2nd', 2)]:
    name = f'r2_{method}_seed{seed}'
    cfg = json.load(open(f'/tmp/cfg/{name}/config.json'))
    assert cfg['data'] == ref_cfg['data'], name
    hist = [json.loads(l) for l in open(f'histories/{name}.jsonl') if l.strip()]
    last, row = hist[-1], rows[(method, str(seed))]
    assert last['genotype']['arch'] == row['arch'] and last['step'] == int(row['steps']) == 1638
    m = last['metrics']
    summary = {
        'genotype': last['genotype'], 'finished': True, 'step': last['step'],
        'total_steps': ref['total_steps'], 'epochs': cfg['search']['epochs'],
        'dataset': ref['dataset'], 'space': ref['space'], 'mode': cfg['search']['mode'],
        'gamma': cfg['search']['gamma'], 'split_class_counts': ref['split_class_counts'],
        'search_time_s': float(row['search_seconds']), 'final_metrics': m,
        'final_explainer_val_acc': m.get('explainer_val_acc'),
        'final_audience_val_acc': m.get('audience_val_acc'),
        'arch': last['genotype']['arch'],
        'recovered': 'rebuilt from this run\'s history.jsonl and its runs.csv row (search_time_s '
                     'rounded to 0.1 s there); the workdir was lost with its machine',
    }
    assert round(summary['final_explainer_val_acc'], 4) == float(row['explainer_val_acc'])
    if row['audience_val_acc']:
        assert round(summary['final_audience_val_acc'], 4) == float(row['audience_val_acc'])
    os.makedirs(f'finished/{name}', exist_ok=True)
    json.dump(summary, open(f'finished/{name}/summary.json', 'w'), indent=1)
    shutil.copyfile(f'/tmp/cfg/{name}/config.json', f'finished/{name}/config.json')
    shutil.copyfile(f'histories/{name}.jsonl', f'finished/{name}/history.jsonl')
    print(name, summary['arch'], summary['search_time_s'])
