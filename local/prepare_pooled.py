"""Several corpora for one pooled recipe: each preparation writes its own manifest folder
(the recipe trains on ``manifest_folder`` plus ``pooled_manifest_folders``, recipes/data/datasets.py).

    prepare_data: !name:local.prepare_pooled.prepare_all
        preparations:
            - !name:local.prepare_commonvoice.prepare_commonvoice
                data_folder: ...
                save_folder: !ref <manifest_folder>
            - !name:local.prepare_speechocean762.prepare_speechocean762
                data_folder: ...
                save_folder: !ref <output_folder>/manifests_speechocean762
"""


def prepare_all(preparations):
    """Run each preparation (a callable whose options the YAML gave); returns their outputs."""
    return [prepare() for prepare in preparations]
